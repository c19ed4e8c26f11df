//! Reading `/proc`: which processes map which GPU library files.
//!
//! Everything here is input from other processes and may be malformed or
//! vanish between two reads; callers count and skip, never panic.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The GPU libraries strand probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LibKind {
    Nccl,
    Cudart,
    Cuda,
}

impl LibKind {
    /// Name in `process_events.gpu_libraries`.
    pub fn name(self) -> &'static str {
        match self {
            LibKind::Nccl => "nccl",
            LibKind::Cudart => "cudart",
            LibKind::Cuda => "cuda",
        }
    }

    /// Kind of a library from its file name: `libnccl.so*`, `libcudart.so*`,
    /// `libcuda.so*` (the driver library, not `libcudart`).
    pub fn from_path(path: &str) -> Option<Self> {
        let base = path.rsplit('/').next().unwrap_or(path);
        if base.starts_with("libnccl.so") {
            Some(LibKind::Nccl)
        } else if base.starts_with("libcudart.so") {
            Some(LibKind::Cudart)
        } else if base.starts_with("libcuda.so") {
            Some(LibKind::Cuda)
        } else {
            None
        }
    }
}

/// A set of [`LibKind`]s, printed as `nccl,cudart,cuda`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LibSet(u8);

impl LibSet {
    pub fn insert(&mut self, kind: LibKind) {
        self.0 |= 1 << kind as u8;
    }
    pub fn contains(self, kind: LibKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, other: LibSet) -> LibSet {
        LibSet(self.0 | other.0)
    }
    pub fn names(self) -> Option<String> {
        let names: Vec<_> = [LibKind::Nccl, LibKind::Cudart, LibKind::Cuda]
            .into_iter()
            .filter(|k| self.contains(*k))
            .map(LibKind::name)
            .collect();
        (!names.is_empty()).then(|| names.join(","))
    }
}

/// One file-backed line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Device as the kernel prints it (`major:minor`, hex) and inode.
    pub dev: (u32, u32),
    pub inode: u64,
    /// Path in the process's mount namespace.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapsError {
    #[error("malformed maps line: {0:?}")]
    Malformed(String),
}

/// Parses one line of `/proc/<pid>/maps`:
/// `start-end perms offset major:minor inode   path`. Returns `None` for
/// anonymous and pseudo mappings (`[heap]`, `[vdso]`) and deleted files.
pub fn parse_maps_line(line: &str) -> Result<Option<Mapping>, MapsError> {
    let bad = || MapsError::Malformed(line.chars().take(200).collect());
    let mut rest = line;
    let mut field = || -> Option<&str> {
        let s = rest.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        let (f, r) = s.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let range = field().ok_or_else(bad)?;
    let _perms = field().ok_or_else(bad)?;
    let _offset = field().ok_or_else(bad)?;
    let dev = field().ok_or_else(bad)?;
    let inode = field().ok_or_else(bad)?;
    if !range.contains('-') {
        return Err(bad());
    }
    let (major, minor) = dev.split_once(':').ok_or_else(bad)?;
    let dev = (u32::from_str_radix(major, 16).map_err(|_| bad())?, u32::from_str_radix(minor, 16).map_err(|_| bad())?);
    let inode: u64 = inode.parse().map_err(|_| bad())?;
    let path = rest.trim_start_matches(' ');
    if inode == 0 || !path.starts_with('/') || path.ends_with(" (deleted)") {
        return Ok(None);
    }
    Ok(Some(Mapping { dev, inode, path: path.to_string() }))
}

/// Mappings of GPU libraries in a maps file, one per distinct file; the
/// number of malformed lines is returned beside them.
pub fn gpu_mappings(maps: &str) -> (Vec<(LibKind, Mapping)>, u64) {
    let mut out: Vec<(LibKind, Mapping)> = Vec::new();
    let mut malformed = 0;
    for line in maps.lines() {
        match parse_maps_line(line) {
            Ok(Some(m)) => {
                if let Some(kind) = LibKind::from_path(&m.path)
                    && !out.iter().any(|(_, o)| o.dev == m.dev && o.inode == m.inode)
                {
                    out.push((kind, m));
                }
            }
            Ok(None) => {}
            Err(_) => malformed += 1,
        }
    }
    (out, malformed)
}

/// Numeric entries of `/proc`.
pub fn list_pids(proc_root: &Path) -> io::Result<Vec<i32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok())
            && pid > 0
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The fields of `/proc/<pid>/stat` strand uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: i32,
    /// Start time in clock ticks since boot: tells a reused pid apart.
    pub starttime: u64,
    /// Virtual memory size: grows when a library is mapped, so an unchanged
    /// (starttime, vsize) means the maps need not be read again.
    pub vsize: u64,
}

/// Parses `/proc/<pid>/stat`. `comm` may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is state (field 3); ppid is field 4, starttime 22, vsize 23.
    Some(Stat {
        comm,
        ppid: fields.get(1)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
        vsize: fields.get(20)?.parse().ok()?,
    })
}

pub fn read_stat(proc_root: &Path, pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?)
}

pub fn read_maps(proc_root: &Path, pid: i32) -> io::Result<String> {
    fs::read_to_string(proc_root.join(pid.to_string()).join("maps"))
}

pub fn read_exe(proc_root: &Path, pid: i32) -> Option<String> {
    fs::read_link(proc_root.join(pid.to_string()).join("exe")).ok().map(|p| p.to_string_lossy().into_owned())
}

/// Path of a file as process `pid` sees it, reachable from strand's mount
/// namespace: `/proc/<pid>/root/<path>` (containers, private mounts).
pub fn path_in(proc_root: &Path, pid: i32, path: &str) -> PathBuf {
    proc_root.join(pid.to_string()).join("root").join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let l = "7f1c2a000000-7f1c2a200000 r-xp 00001000 fd:01 1234567                    /usr/lib/x86_64-linux-gnu/libnccl.so.2.21.5";
        let m = parse_maps_line(l).expect("valid").expect("file-backed");
        assert_eq!(m.dev, (0xfd, 1));
        assert_eq!(m.inode, 1234567);
        assert_eq!(LibKind::from_path(&m.path), Some(LibKind::Nccl));

        let spaced = "7f00-7f01 r--p 00000000 08:02 42 /opt/my libs/libcudart.so.12";
        assert_eq!(parse_maps_line(spaced).expect("valid").expect("file").path, "/opt/my libs/libcudart.so.12");
        assert_eq!(parse_maps_line("7f00-7f01 rw-p 00000000 00:00 0 ").expect("valid"), None);
        assert_eq!(parse_maps_line("7f00-7f01 r-xp 00000000 00:00 0 [vdso]").expect("valid"), None);
        let deleted = "7f00-7f01 r-xp 00000000 08:02 42 /tmp/libcuda.so.1 (deleted)";
        assert_eq!(parse_maps_line(deleted).expect("valid"), None);
        assert!(parse_maps_line("garbage").is_err());
        assert!(parse_maps_line("7f00-7f01 r-xp 00000000 zz:02 42 /x").is_err());
        assert!(parse_maps_line("").is_err());
    }

    #[test]
    fn kinds_and_sets() {
        assert_eq!(LibKind::from_path("/x/libcuda.so.1"), Some(LibKind::Cuda));
        assert_eq!(LibKind::from_path("/x/libcudart.so.12.4.127"), Some(LibKind::Cudart));
        assert_eq!(LibKind::from_path("/x/libcudnn.so.9"), None);
        assert_eq!(LibKind::from_path("/x/libnccl-net.so"), None);
        let mut s = LibSet::default();
        assert_eq!(s.names(), None);
        s.insert(LibKind::Cuda);
        s.insert(LibKind::Nccl);
        assert_eq!(s.names().as_deref(), Some("nccl,cuda"));
    }

    #[test]
    fn gpu_mappings_dedupe_files_and_count_bad_lines() {
        let maps = "\
7f00-7f01 r--p 00000000 08:02 42 /lib/libnccl.so.2
7f01-7f02 r-xp 00001000 08:02 42 /lib/libnccl.so.2
nonsense line
7f03-7f04 r-xp 00001000 08:02 43 /lib/libc.so.6
7f05-7f06 r-xp 00001000 08:02 44 /lib/libcuda.so.1
";
        let (libs, bad) = gpu_mappings(maps);
        assert_eq!(bad, 1);
        assert_eq!(libs.len(), 2);
        assert_eq!(libs[0].0, LibKind::Nccl);
        assert_eq!(libs[1].0, LibKind::Cuda);
    }

    #[test]
    fn stat_with_odd_comm() {
        let text = "1234 (we ird) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 4096000 100 18446744073709551615";
        let st = parse_stat(text).expect("parses");
        assert_eq!(st.comm, "we ird) (x");
        assert_eq!(st.ppid, 1);
        assert_eq!(st.starttime, 98765);
        assert_eq!(st.vsize, 4096000);
        assert_eq!(parse_stat("1234 (x"), None);
        let own = read_stat(Path::new("/proc"), std::process::id() as i32).expect("own stat");
        assert!(own.vsize > 0);
    }
}
