//! `strand-sim`: writes a simulated fleet dataset (benchmarks, demos, the
//! end-to-end tests).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use strand_sim::{SimConfig, with_demo_faults, write};

#[derive(Parser, Debug)]
#[command(
    name = "strand-sim",
    about = "Write a simulated fleet dataset: raw rows of every table, windows by the agent's WindowBuilder"
)]
struct Args {
    /// Output directory (created).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Start time, UTC nanoseconds (hour-aligned); default 2026-01-05T00:00:00Z.
    #[arg(long, default_value_t = 1_767_571_200_000_000_000)]
    start_ns: i64,
    /// Inject one fault of each kind into the first jobs (a demo fleet).
    #[arg(long)]
    faults: bool,
    /// Nodes without CUPTI (NVML and eBPF only), by index (repeatable).
    #[arg(long)]
    nvml_only: Vec<usize>,
    /// Also write the CUPTI nodes' kernel_events.
    #[arg(long)]
    kernels: bool,
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = SimConfig::fleet(args.nodes, args.hours, args.start_ns);
    if args.faults {
        cfg = with_demo_faults(cfg);
    }
    cfg.nvml_only = args.nvml_only;
    cfg.write_kernels = args.kernels;
    let threads =
        if args.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { args.threads };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let t = std::time::Instant::now();
    let rows = write(&cfg, &args.out, threads)?;
    eprintln!(
        "strand-sim: {} nodes, {} jobs, {rows} rows in {:.1} s under {}",
        cfg.nodes,
        cfg.jobs.len(),
        t.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
