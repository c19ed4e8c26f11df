//! Loads the BPF object and attaches its kernel hooks, each on its own: a
//! hook that cannot load or attach turns off only the part it feeds, and
//! the part's status says why and what takes its place.

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, PrintLevel, ProgramMut, UprobeOpts};
use tracing::{debug, warn};

use crate::capability::BTF_PATH;
use crate::elf::Elf;
use crate::parts::{Part, PartState, PartStatus, ProcessHook};
use crate::skel;
use crate::tracer::{EbpfError, TracerConfig};

/// Where libbpf looks for a classic tracepoint's id.
const TRACEFS_EVENTS: [&str; 2] = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"];

/// The loaded object, the exec/exit links that attached, and the status of
/// every part but the `/proc` scan.
pub(crate) struct Loaded {
    pub skel: skel::StrandSkel<'static>,
    pub hook_links: Vec<Link>,
    pub parts: Vec<PartStatus>,
    /// The exit hook attached: exits are reported by the kernel.
    pub exit_hooked: bool,
}

/// libbpf's messages, once the tracer runs: warnings are worth seeing.
fn libbpf_log(level: PrintLevel, msg: String) {
    let msg = msg.trim_end();
    match level {
        PrintLevel::Warn => warn!(target: "libbpf", "{msg}"),
        PrintLevel::Info => debug!(target: "libbpf", "{msg}"),
        PrintLevel::Debug => {}
    }
}

/// libbpf's messages while hooks are tried: a hook that fails is expected
/// on some hosts and its part's status says why, so they are debug only.
fn libbpf_quiet(_level: PrintLevel, msg: String) {
    debug!(target: "libbpf", "{}", msg.trim_end());
}

/// Quiet libbpf while it lives; its usual logging afterwards.
struct Quiet;

impl Quiet {
    fn new() -> Self {
        libbpf_rs::set_print(Some((PrintLevel::Info, libbpf_quiet)));
        Quiet
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        libbpf_rs::set_print(Some((PrintLevel::Info, libbpf_log)));
    }
}

fn open(cfg: &TracerConfig) -> Result<skel::OpenStrandSkel<'static>, EbpfError> {
    // The skeleton borrows its storage for as long as it lives: one small
    // allocation per load, deliberately leaked.
    let storage = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = skel::StrandSkelBuilder::default().open(storage).map_err(EbpfError::Load)?;
    open.maps.nccl_rb.set_max_entries(cfg.nccl_ring_bytes).map_err(EbpfError::Load)?;
    open.maps.cuda_rb.set_max_entries(cfg.cuda_ring_bytes).map_err(EbpfError::Load)?;
    open.maps.proc_rb.set_max_entries(cfg.proc_ring_bytes).map_err(EbpfError::Load)?;
    // The agent's own calls (e.g. its GPU reductions) are not workload.
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.ignore_tgid = std::process::id();
    }
    Ok(open)
}

/// Loads the programs: the uprobes always, the exec/exit programs of each
/// configured hook while they load. A hook whose programs make the load
/// fail is dropped and the load retried without it.
pub(crate) fn load(cfg: &TracerConfig) -> Result<Loaded, EbpfError> {
    let _quiet = Quiet::new();
    let btf = Path::new(BTF_PATH).exists();
    // Hooks whose programs are not loaded, and why.
    let mut not_loaded: Vec<(ProcessHook, String)> = Vec::new();
    let mut want: Vec<ProcessHook> = Vec::new();
    for &h in &cfg.process_hooks {
        if btf {
            want.push(h);
        } else {
            not_loaded.push((h, format!("no kernel BTF ({BTF_PATH}) for the task_struct reads")));
        }
    }
    let skel = loop {
        let mut open = open(cfg)?;
        let btf_on = want.contains(&ProcessHook::BtfTracepoint);
        let tp_on = want.contains(&ProcessHook::Tracepoint);
        open.progs.on_exec_btf.set_autoload(btf_on);
        open.progs.on_exit_btf.set_autoload(btf_on);
        open.progs.on_exec_tp.set_autoload(tp_on);
        open.progs.on_exit_tp.set_autoload(tp_on);
        match open.load() {
            Ok(skel) => break skel,
            Err(e) => {
                // tp_btf needs the most from the kernel: suspect it first.
                let Some(i) = want.iter().position(|h| *h == ProcessHook::BtfTracepoint).or(want.len().checked_sub(1))
                else {
                    return Err(EbpfError::Load(e));
                };
                let h = want.remove(i);
                not_loaded.push((h, format!("its programs did not load ({e:#})")));
            }
        }
    };

    let mut parts = Vec::new();
    let mut hook_links = Vec::new();
    let mut exit_hooked = false;
    for part in [Part::Exec, Part::Exit] {
        if cfg.process_hooks.is_empty() {
            parts.push(PartStatus { part, state: PartState::Off, detail: hooks_off(part, cfg.rescan_period) });
            continue;
        }
        let mut tried = Vec::new();
        let mut attached = None;
        for &h in &cfg.process_hooks {
            if let Some((_, why)) = not_loaded.iter().find(|(x, _)| *x == h) {
                tried.push(format!("{}: {why}", h.name()));
                continue;
            }
            let prog = match (part, h) {
                (Part::Exec, ProcessHook::BtfTracepoint) => &skel.progs.on_exec_btf,
                (Part::Exec, ProcessHook::Tracepoint) => &skel.progs.on_exec_tp,
                (_, ProcessHook::BtfTracepoint) => &skel.progs.on_exit_btf,
                (_, ProcessHook::Tracepoint) => &skel.progs.on_exit_tp,
            };
            match prog.attach() {
                Ok(link) => {
                    hook_links.push(link);
                    attached = Some(h);
                    break;
                }
                Err(e) => tried.push(format!("{}: {}", h.name(), attach_error(h, &e))),
            }
        }
        let event = if part == Part::Exec { "sched_process_exec" } else { "sched_process_exit" };
        let status = match attached {
            Some(h) => {
                exit_hooked |= part == Part::Exit;
                let how = match h {
                    ProcessHook::BtfTracepoint => format!("tp_btf/{event} (by BTF id, no tracefs needed)"),
                    ProcessHook::Tracepoint => format!("tracepoint sched/{event} (through tracefs)"),
                };
                let mut detail = how;
                if !tried.is_empty() {
                    detail.push_str(&format!("; not used: {}", tried.join("; ")));
                }
                PartStatus { part, state: PartState::Up, detail }
            }
            None => PartStatus {
                part,
                state: PartState::Down,
                detail: format!("{event} not followed ({}): {}", tried.join("; "), fallback(part, cfg.rescan_period)),
            },
        };
        parts.push(status);
    }

    // The uprobe programs loaded; show that they also attach.
    let libc = libc_function();
    for (part, entry, ret) in [
        (Part::Nccl, &skel.progs.enter_ncclAllReduce, &skel.progs.exit_ncclAllReduce),
        (Part::CudaSync, &skel.progs.enter_cudaStreamSynchronize, &skel.progs.exit_cudaStreamSynchronize),
    ] {
        let what = if part == Part::Nccl { "libnccl" } else { "libcudart and libcuda" };
        let status = match &libc {
            Ok((path, offset)) => match attach_pair(entry, ret, path, *offset) {
                Ok(()) => PartStatus {
                    part,
                    state: PartState::Up,
                    detail: format!("uprobes on {what} (attach checked on {}:getpid)", path.display()),
                },
                Err(e) => PartStatus {
                    part,
                    state: PartState::Down,
                    detail: format!("uprobes do not attach ({e}): no {}", rows_of(part)),
                },
            },
            Err(why) => PartStatus {
                part,
                state: PartState::Up,
                detail: format!("uprobes on {what} loaded; attach not checked ({why})"),
            },
        };
        parts.push(status);
    }
    parts.sort_by_key(|p| p.part);
    Ok(Loaded { skel, hook_links, parts, exit_hooked })
}

fn rows_of(part: Part) -> &'static str {
    if part == Part::Nccl { "nccl_calls rows" } else { "cuda_sync_calls rows" }
}

fn fallback(part: Part, rescan: Duration) -> String {
    match part {
        Part::Exec => format!(
            "new processes are found by the /proc scan every {}s (running rows instead of exec rows)",
            rescan.as_secs_f64()
        ),
        _ => "no exit rows, and calls cut by a thread's exit are not reported".to_string(),
    }
}

fn hooks_off(part: Part, rescan: Duration) -> String {
    format!("off (ebpf process_hooks is empty): {}", fallback(part, rescan))
}

/// A classic tracepoint's attach error, with the usual cause named.
fn attach_error(h: ProcessHook, e: &libbpf_rs::Error) -> String {
    let tracefs = TRACEFS_EVENTS.iter().any(|p| Path::new(p).is_dir());
    if h == ProcessHook::Tracepoint && !tracefs {
        format!("tracefs is not mounted (no {}) ({e:#})", TRACEFS_EVENTS[0])
    } else {
        format!("{e:#}")
    }
}

/// Attaches an entry and a return program to `path`+`offset` for this
/// process only, then detaches them: proves that uprobes attach here
/// without touching any other process.
fn attach_pair(entry: &ProgramMut<'_>, ret: &ProgramMut<'_>, path: &Path, offset: usize) -> Result<(), String> {
    let pid = std::process::id() as i32;
    let mut links = Vec::new();
    for (prog, retprobe) in [(entry, false), (ret, true)] {
        let opts = UprobeOpts { retprobe, ..UprobeOpts::default() };
        links.push(prog.attach_uprobe_with_opts(pid, path, offset, opts).map_err(|e| format!("{e:#}"))?);
    }
    Ok(())
}

/// This process's C library and the file offset of its `getpid`.
fn libc_function() -> Result<(PathBuf, usize), String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("reading /proc/self/maps: {e}"))?;
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.rsplit('/').next().is_some_and(|b| b.starts_with("libc.so") || b.starts_with("libc-")))
        .map(PathBuf::from)
        .ok_or_else(|| "no C library mapped in this process".to_string())?;
    let elf = Elf::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let offsets = elf.function_offsets(&["getpid"]).map_err(|e| format!("{}: {e}", path.display()))?;
    let offset = offsets.get("getpid").ok_or_else(|| format!("{} exports no getpid", path.display()))?;
    Ok((path, *offset as usize))
}

/// Whether the `/proc` scan can run: it lists processes.
pub(crate) fn proc_scan_status(root: &Path, rescan: Duration) -> PartStatus {
    match crate::procfs::list_pids(root) {
        Ok(pids) => PartStatus {
            part: Part::ProcScan,
            state: PartState::Up,
            detail: format!("every {}s over {} ({} processes now)", rescan.as_secs_f64(), root.display(), pids.len()),
        },
        Err(e) => PartStatus {
            part: Part::ProcScan,
            state: PartState::Down,
            detail: format!(
                "cannot list {} ({e}): library files are found only through extra_libraries",
                root.display()
            ),
        },
    }
}
