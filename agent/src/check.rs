//! `strand-agent check`: which sources work on this host, and why not.

use crate::config::Config;

/// One line of the capability table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub source: &'static str,
    pub usable: bool,
    pub detail: String,
}

fn cap(source: &'static str, usable: bool, detail: impl Into<String>) -> Capability {
    Capability { source, usable, detail: detail.into() }
}

/// Probes every source without starting any.
pub fn probe(cfg: &Config) -> Vec<Capability> {
    let mut out = Vec::new();

    // NVML and GPM.
    match crate::nvml::real::NvmlLayer::open() {
        Ok(mut layer) => {
            use crate::nvml::layer::GpuLayer;
            let devices = layer.devices();
            out.push(cap("NVML", !devices.is_empty(), format!("{}; {} GPU(s)", layer.describe(), devices.len())));
            let gpm: Vec<String> =
                devices.iter().filter(|d| layer.gpm_supported(d.index)).map(|d| d.index.to_string()).collect();
            if gpm.is_empty() {
                out.push(cap(
                    "GPM",
                    false,
                    "no GPU supports GPM (Hopper or newer needed): SM/tensor/DRAM activity will be null",
                ));
            } else {
                out.push(cap("GPM", true, format!("GPU(s) {} support GPM", gpm.join(","))));
            }
        }
        Err(e) => {
            out.push(cap("NVML", false, format!("{e}: no GPU counters or XID events")));
            out.push(cap("GPM", false, "needs NVML"));
        }
    }

    // CUPTI injection: the driver loads the library into workloads.
    let cuda = unsafe { cudarc_present::driver() };
    let cupti = unsafe { cudarc_present::cupti() };
    let inject = injection_library();
    let detail = match (&inject, cuda, cupti) {
        (None, _, _) => {
            "libstrand_inject.so not found next to strand-agent (build it: cargo build -p strand-inject)".to_string()
        }
        (Some(p), false, _) => {
            format!("{} found, but libcuda is not loadable here: no CUDA workloads to trace", p.display())
        }
        (Some(p), true, false) => format!(
            "{} found, but libcupti is not loadable: add the CUDA toolkit's CUPTI to the workload's library path",
            p.display()
        ),
        (Some(p), true, true) => format!("{} (use `strand-agent wrap -- <cmd>`)", p.display()),
    };
    out.push(cap("CUPTI injection", inject.is_some() && cuda && cupti, detail));

    // eBPF.
    let ebpf = strand_ebpf::capability();
    let mut detail = if ebpf.usable {
        "uprobes on NCCL and CUDA synchronize calls, exec/exit tracepoints".to_string()
    } else {
        format!("{}: NCCL and CUDA synchronize probes disabled", ebpf.reason)
    };
    for w in &ebpf.warnings {
        detail.push_str(&format!("; {w}"));
    }
    out.push(cap("eBPF", ebpf.usable, detail));

    // perf events.
    use perf_event::events::{Hardware, Software};
    match perf_event::Builder::new(Software::TASK_CLOCK).observe_self().any_cpu().build() {
        Ok(_) => {
            let hw = perf_event::Builder::new(Hardware::INSTRUCTIONS).observe_self().any_cpu().build();
            out.push(cap(
                "perf events",
                true,
                match hw {
                    Ok(_) => "software and hardware counters".to_string(),
                    Err(e) => format!("software counters only (hardware counters: {e})"),
                },
            ));
        }
        Err(e) => out.push(cap(
            "perf events",
            false,
            format!("cannot open a software counter ({e}); check kernel.perf_event_paranoid or CAP_PERFMON"),
        )),
    }

    // Reductions.
    let backend = cfg.kernels.backend.parse().unwrap_or_default();
    match strand_kernels::Reducer::new(backend) {
        Ok(r) if r.uses_gpu(usize::MAX) => out.push(cap("GPU reductions", true, "NVRTC and a GPU are usable")),
        Ok(_) => out.push(cap("GPU reductions", false, "CPU backend (no usable GPU or NVRTC); results are identical")),
        Err(e) => out.push(cap("GPU reductions", false, e.to_string())),
    }

    // Where data goes.
    match &cfg.collector.url {
        Some(url) => out.push(cap("collector", true, format!("batches shipped to {url}"))),
        None => out.push(cap("collector", true, format!("standalone: batches stay in {}", cfg.data_dir.display()))),
    }
    out
}

/// The injection library shipped next to the agent binary (or its target dir).
pub fn injection_library() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("libstrand_inject.so"), dir.join("../lib/strand/libstrand_inject.so"), dir.join("../libstrand_inject.so")]
        .into_iter()
        .find(|p| p.exists())
        .and_then(|p| p.canonicalize().ok())
}

/// Library presence without cudarc's panics.
mod cudarc_present {
    /// # Safety
    /// Loads and unloads a shared library.
    pub unsafe fn driver() -> bool {
        unsafe { cudarc::driver::sys::is_culib_present() }
    }
    /// # Safety
    /// Loads and unloads a shared library.
    pub unsafe fn cupti() -> bool {
        unsafe { cudarc::cupti::sys::is_culib_present() }
    }
}

/// Prints the table, ripgrep-plain.
pub fn print(caps: &[Capability]) {
    let width = caps.iter().map(|c| c.source.len()).max().unwrap_or(0);
    println!("{:width$}  {:6}  DETAIL", "SOURCE", "STATUS");
    for c in caps {
        println!("{:width$}  {:6}  {}", c.source, if c.usable { "ok" } else { "no" }, c.detail);
    }
}
