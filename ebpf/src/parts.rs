//! The parts of the tracer that run, or not, each on its own: what
//! `strand-agent check`, the agent's log and `strand_agent_source_up`
//! report (`docs/ebpf.md`, "Parts").

use std::fmt;

/// A piece of the tracer that works without the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// Uprobes on libnccl: `nccl_calls`.
    Nccl,
    /// Uprobes on libcudart and libcuda: `cuda_sync_calls`.
    CudaSync,
    /// Process exec in the kernel: `exec` rows, and a new process's libraries
    /// probed within one poll instead of one rescan.
    Exec,
    /// Process exit in the kernel: `exit` rows with the exit status, and calls
    /// cut by a thread's exit.
    Exit,
    /// The periodic `/proc` scan that finds library files to probe.
    ProcScan,
}

impl Part {
    pub const ALL: [Part; 5] = [Part::Nccl, Part::CudaSync, Part::Exec, Part::Exit, Part::ProcScan];

    /// The `part` label: `nccl`, `cuda_sync`, `exec`, `exit`, `proc_scan`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Nccl => "nccl",
            Part::CudaSync => "cuda_sync",
            Part::Exec => "exec",
            Part::Exit => "exit",
            Part::ProcScan => "proc_scan",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a part runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartState {
    Up,
    /// Wanted but not running: the detail says why and what takes its place.
    Down,
    /// Turned off by the configuration.
    Off,
}

/// A part, whether it runs, and how (or why not), in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartStatus {
    pub part: Part,
    pub state: PartState,
    pub detail: String,
}

impl PartStatus {
    pub fn is_up(&self) -> bool {
        self.state == PartState::Up
    }
}

/// Kernel hooks that follow process exec and exit, in order of preference
/// ([`crate::TracerConfig::process_hooks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessHook {
    /// BTF-enabled raw tracepoints (`tp_btf/sched_process_exec`, `…_exit`):
    /// attached by BTF id, so they need kernel BTF (5.5+) but not tracefs.
    BtfTracepoint,
    /// The classic `sched` tracepoints: attached through tracefs
    /// (`/sys/kernel/tracing/events/sched/…/id`).
    Tracepoint,
}

impl ProcessHook {
    /// Its name in the configuration: `tp_btf` or `tracepoint`.
    pub fn name(self) -> &'static str {
        match self {
            ProcessHook::BtfTracepoint => "tp_btf",
            ProcessHook::Tracepoint => "tracepoint",
        }
    }

    /// Parses a configuration name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tp_btf" => Ok(ProcessHook::BtfTracepoint),
            "tracepoint" => Ok(ProcessHook::Tracepoint),
            other => Err(format!("unknown process hook {other:?}: use \"tp_btf\" or \"tracepoint\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_names_round_trip_and_bad_ones_are_named() {
        for h in [ProcessHook::BtfTracepoint, ProcessHook::Tracepoint] {
            assert_eq!(ProcessHook::parse(h.name()), Ok(h));
        }
        let e = ProcessHook::parse("kprobe").unwrap_err();
        assert!(e.contains("\"kprobe\"") && e.contains("tp_btf"), "{e}");
    }
}
