//! Just enough ELF to place uprobes: the exported functions of a shared
//! library (`.dynsym`, so stripped libraries work) and their file offsets,
//! plus a string search in `.rodata` (NCCL's `NCCL version x.y.z`).
//!
//! Libraries come from other processes and containers: every size and offset
//! is checked, and nothing is read whole except the symbol tables (capped).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Largest `.dynsym` or `.dynstr` read (libnccl's are well under 1 MiB).
const MAX_TABLE: u64 = 64 << 20;
/// Largest `.rodata` scanned for a string.
const MAX_RODATA: u64 = 512 << 20;

const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
const STT_FUNC: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a 64-bit little-endian ELF file")]
    NotElf,
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    #[error("no .dynsym section (not a shared library?)")]
    NoDynsym,
}

#[derive(Debug, Clone, Copy)]
struct Section {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
}

/// An opened library: its sections and loadable segments.
pub struct Elf {
    file: File,
    sections: Vec<Section>,
    segments: Vec<Segment>,
    shstrtab: Vec<u8>,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(x)
}

fn read_at(file: &File, offset: u64, len: u64) -> Result<Vec<u8>, ElfError> {
    if len > MAX_TABLE {
        return Err(ElfError::Malformed("table larger than 64 MiB"));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn cstr(table: &[u8], at: u32) -> Option<&[u8]> {
    let rest = table.get(at as usize..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some(&rest[..end])
}

impl Elf {
    pub fn open(path: &Path) -> Result<Self, ElfError> {
        let file = File::open(path)?;
        let mut hdr = [0u8; 64];
        file.read_exact_at(&mut hdr, 0).map_err(|_| ElfError::NotElf)?;
        if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
            return Err(ElfError::NotElf);
        }
        let (phoff, shoff) = (u64_at(&hdr, 0x20), u64_at(&hdr, 0x28));
        let (phentsize, phnum) = (u16_at(&hdr, 0x36) as u64, u16_at(&hdr, 0x38) as u64);
        let (shentsize, shnum, shstrndx) =
            (u16_at(&hdr, 0x3a) as u64, u16_at(&hdr, 0x3c) as u64, u16_at(&hdr, 0x3e) as usize);
        if (phnum > 0 && phentsize < 56) || (shnum > 0 && shentsize < 64) {
            return Err(ElfError::Malformed("header entry sizes"));
        }

        let raw = read_at(&file, phoff, phentsize * phnum)?;
        let segments = raw
            .chunks_exact(phentsize.max(1) as usize)
            .filter(|p| u32_at(p, 0) == PT_LOAD)
            .map(|p| Segment { offset: u64_at(p, 8), vaddr: u64_at(p, 16), filesz: u64_at(p, 32) })
            .collect();

        let raw = read_at(&file, shoff, shentsize * shnum)?;
        let sections: Vec<Section> = raw
            .chunks_exact(shentsize.max(1) as usize)
            .map(|s| Section {
                name: u32_at(s, 0),
                kind: u32_at(s, 4),
                offset: u64_at(s, 24),
                size: u64_at(s, 32),
                link: u32_at(s, 40),
            })
            .collect();
        let shstrtab = match sections.get(shstrndx) {
            Some(s) => read_at(&file, s.offset, s.size)?,
            None => Vec::new(),
        };
        Ok(Self { file, sections, segments, shstrtab })
    }

    fn section_named(&self, name: &str) -> Option<Section> {
        self.sections.iter().copied().find(|s| cstr(&self.shstrtab, s.name) == Some(name.as_bytes()))
    }

    /// File offset of a virtual address, through the loadable segments.
    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
            .and_then(|s| (vaddr - s.vaddr).checked_add(s.offset))
    }

    /// File offsets of the defined functions in `.dynsym` whose name is in
    /// `wanted` (the uprobe offset for each).
    pub fn function_offsets(&self, wanted: &[&str]) -> Result<HashMap<String, u64>, ElfError> {
        let dynsym = self.sections.iter().copied().find(|s| s.kind == SHT_DYNSYM).ok_or(ElfError::NoDynsym)?;
        let strtab = self.sections.get(dynsym.link as usize).copied().ok_or(ElfError::Malformed(".dynsym link"))?;
        let syms = read_at(&self.file, dynsym.offset, dynsym.size)?;
        let names = read_at(&self.file, strtab.offset, strtab.size)?;
        let mut found = HashMap::new();
        for sym in syms.chunks_exact(24) {
            let (info, shndx, value) = (sym[4], u16_at(sym, 6), u64_at(sym, 8));
            if info & 0xf != STT_FUNC || shndx == 0 || value == 0 {
                continue;
            }
            let Some(name) = cstr(&names, u32_at(sym, 0)) else { continue };
            let Ok(name) = std::str::from_utf8(name) else { continue };
            if wanted.contains(&name)
                && !found.contains_key(name)
                && let Some(off) = self.file_offset(value)
            {
                found.insert(name.to_string(), off);
            }
        }
        Ok(found)
    }

    /// The text that follows the first `prefix` in `.rodata` that a digit
    /// follows (a version number: NCCL 2.30+ also holds "NCCL version
    /// information"), up to a NUL or 64 bytes. Read in 1 MiB windows that
    /// overlap by the longest match.
    pub fn rodata_version_after(&self, prefix: &[u8]) -> Result<Option<String>, ElfError> {
        const WINDOW: u64 = 1 << 20;
        let Some(rodata) = self.section_named(".rodata") else { return Ok(None) };
        let size = rodata.size.min(MAX_RODATA);
        let overlap = prefix.len() as u64 + VERSION_TAIL as u64;
        let mut start = 0u64;
        let mut buf = vec![0u8; (WINDOW + overlap) as usize];
        while start < size {
            let len = (WINDOW + overlap).min(size - start) as usize;
            let at = rodata.offset.checked_add(start).ok_or(ElfError::Malformed(".rodata offset"))?;
            self.file.read_exact_at(&mut buf[..len], at)?;
            if let Some(found) = version_after(&buf[..len], prefix) {
                return Ok(Some(found));
            }
            start += WINDOW;
        }
        Ok(None)
    }
}

/// Longest text [`Elf::rodata_version_after`] returns.
const VERSION_TAIL: usize = 64;

/// In `bytes`, the text after the first `prefix` that a digit follows.
fn version_after(bytes: &[u8], prefix: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(i) = bytes[from..].windows(prefix.len()).position(|w| w == prefix) {
        let rest = &bytes[from + i + prefix.len()..];
        if rest.first().is_some_and(u8::is_ascii_digit) {
            let end = rest.iter().take(VERSION_TAIL).position(|&c| c == 0).unwrap_or(rest.len().min(VERSION_TAIL));
            return Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
        from += i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_match_a_digit_follows() {
        let rodata = b"Prints NCCL version information only.\0NCCL version 2.32.3+cuda12.9\0NCCL version 9";
        assert_eq!(version_after(rodata, b"NCCL version "), Some("2.32.3+cuda12.9".to_string()));
        assert_eq!(version_after(b"NCCL version information\0", b"NCCL version "), None);
        assert_eq!(version_after(b"xNCCL version 2.16.2", b"NCCL version "), Some("2.16.2".to_string()));
        assert_eq!(version_after(b"NCCL version ", b"NCCL version "), None);
    }

    #[test]
    fn reads_own_test_binary_and_rejects_non_elf() {
        // The test binary is an ELF file; it may or may not export anything.
        let me = std::env::current_exe().expect("test binary path");
        let elf = Elf::open(&me).expect("test binary is ELF");
        assert!(elf.segments.iter().any(|s| s.filesz > 0));

        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.so");
        std::fs::write(&junk, b"not an elf at all, just text padding padding padding padding").expect("write");
        assert!(matches!(Elf::open(&junk), Err(ElfError::NotElf)));
        let short = dir.path().join("short.so");
        std::fs::write(&short, b"\x7fELF").expect("write");
        assert!(matches!(Elf::open(&short), Err(ElfError::NotElf)));
    }

    #[test]
    fn libc_exports_functions_at_file_offsets() {
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists());
        let Some(libc) = libc else { return };
        let elf = Elf::open(libc).expect("libc is ELF");
        let found = elf.function_offsets(&["getpid", "no_such_function_here"]).expect("dynsym");
        assert!(found.contains_key("getpid"));
        assert!(!found.contains_key("no_such_function_here"));
    }

    #[test]
    fn corrupted_headers_are_errors_not_panics() {
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists());
        let Some(libc) = libc else { return };
        let good = std::fs::read(libc).expect("read libc");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.so");
        // Every field of the ELF header past the identification, set to 0x00 and 0xff.
        for at in 0x10..0x40 {
            for byte in [0x00u8, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                std::fs::write(&path, &bad).expect("write");
                if let Ok(elf) = Elf::open(&path) {
                    let _ = elf.function_offsets(&["getpid"]);
                    let _ = elf.rodata_version_after(b"GNU C Library");
                }
            }
        }
        // A file cut short after the header.
        std::fs::write(&path, &good[..4096]).expect("write");
        if let Ok(elf) = Elf::open(&path) {
            assert!(elf.function_offsets(&["getpid"]).is_err());
        }
    }
}
