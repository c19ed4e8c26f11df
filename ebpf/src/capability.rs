//! Can this process trace with eBPF here? Answers `strand-agent check` and
//! the start of [`crate::Tracer`], naming what is missing.

use std::path::Path;

/// What [`capability`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The tracer can start.
    pub usable: bool,
    /// One line naming what is missing, or `"ok"`.
    pub reason: String,
    /// Each missing requirement (the tracer cannot start while any remains).
    pub missing: Vec<String>,
    /// What works only in part (e.g. no kernel BTF: no process exit codes).
    pub warnings: Vec<String>,
}

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Oldest kernel with what the programs use: BPF ring buffers (5.8) and
/// atomic fetch-and-add (5.12).
pub const MIN_KERNEL: (u32, u32) = (5, 12);

pub(crate) const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Effective capability set of this process, from `/proc/self/status`.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

fn kernel_release() -> Option<String> {
    // SAFETY: `uname` fills the zeroed struct; `release` is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned())
    }
}

/// `"6.8.0-45-generic"` → `(6, 8)`.
pub(crate) fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether the `bpf()` system call accepts a map from this process (it can
/// be refused by seccomp, lockdown or a missing capability).
fn bpf_syscall_works() -> Result<(), String> {
    use libbpf_rs::{MapHandle, MapType};
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    MapHandle::create(MapType::Array, Option::<&str>::None, 4, 4, 1, &opts).map(drop).map_err(|e| e.to_string())
}

/// Checks privileges, kernel and `bpf()` for the tracer.
pub fn capability() -> Capability {
    let mut missing = Vec::new();
    let mut warnings = Vec::new();

    match effective_caps() {
        Some(caps) => {
            let has = |c: u32| caps & (1u64 << c) != 0;
            let admin = has(CAP_SYS_ADMIN);
            if !(has(CAP_BPF) || admin) {
                missing.push("CAP_BPF (or CAP_SYS_ADMIN)".to_string());
            }
            if !(has(CAP_PERFMON) || admin) {
                missing.push("CAP_PERFMON (or CAP_SYS_ADMIN), for uprobes and tracepoints".to_string());
            }
            if !has(CAP_SYS_PTRACE) {
                warnings.push("no CAP_SYS_PTRACE: maps of other users' processes are unreadable".to_string());
            }
            if !has(CAP_DAC_READ_SEARCH) {
                warnings.push(
                    "no CAP_DAC_READ_SEARCH: libraries inside containers (/proc/<pid>/root) may be unreachable"
                        .to_string(),
                );
            }
        }
        None => missing.push("cannot read CapEff in /proc/self/status".to_string()),
    }

    match kernel_release().as_deref().and_then(parse_release) {
        Some(v) if v < MIN_KERNEL => missing.push(format!(
            "kernel {}.{} is older than {}.{} (BPF ring buffer and atomics)",
            v.0, v.1, MIN_KERNEL.0, MIN_KERNEL.1
        )),
        Some(_) => {}
        None => warnings.push("cannot read the kernel version".to_string()),
    }

    if !Path::new("/sys/bus/event_source/devices/uprobe/type").exists() {
        warnings.push(
            "kernel without uprobes (no uprobe PMU, CONFIG_UPROBE_EVENTS): no NCCL or CUDA synchronize calls"
                .to_string(),
        );
    }
    if !Path::new(BTF_PATH).exists() {
        warnings.push(format!(
            "no kernel BTF ({BTF_PATH}): process exec/exit are not followed, and unfinished calls are not reported"
        ));
    }
    if let Err(e) = bpf_syscall_works() {
        missing.push(format!("bpf() system call refused: {e}"));
    }

    let usable = missing.is_empty();
    let reason = if usable { "ok".to_string() } else { missing.join("; ") };
    Capability { usable, reason, missing, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-1053-aws"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn capability_names_what_is_missing() {
        let c = capability();
        if c.usable {
            assert_eq!(c.reason, "ok");
            assert!(c.missing.is_empty());
        } else {
            assert!(!c.missing.is_empty());
            assert_eq!(c.reason, c.missing.join("; "));
        }
    }
}
