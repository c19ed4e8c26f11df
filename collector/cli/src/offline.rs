//! The offline commands, which `strand` runs itself: flags → typed options
//! → `strand_offline`.

use std::sync::Arc;

use anyhow::Context;
use strand_analysis::mfu::{PeakOverride, PeakTable};
use strand_offline::export::{self, ExportOptions};
use strand_offline::import::{self, ImportOptions};
use strand_offline::kineto::KinetoOptions;
use strand_offline::postmortem::{self, PostmortemOptions};
use strand_offline::run::RunOptions;
use strand_schemas::comm_kernels::CommKernels;

use crate::args::{self, ExportCommand, ImportCommand, KinetoArgs, PostmortemArgs, RunArgs, ns};

pub fn import(cmd: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Kineto(a) = cmd;
    let opts = import_options(&a)?;
    for t in import::import_kineto(&opts)? {
        println!(
            "{}: rank {} of {} as node {}{}: {} kernels, {} NCCL calls, {} sync calls, {} steps, {} windows → {}",
            t.file.display(),
            t.rank.map_or("?".to_string(), |r| r.to_string()),
            t.world_size.map_or("?".to_string(), |r| r.to_string()),
            t.node,
            if t.gpu_names.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.gpu_names.values().cloned().collect::<Vec<_>>().join(", "))
            },
            t.kernels,
            t.nccl,
            t.syncs,
            t.steps,
            t.windows,
            a.out.display()
        );
    }
    Ok(())
}

fn import_options(a: &KinetoArgs) -> anyhow::Result<ImportOptions> {
    Ok(ImportOptions {
        traces: a.traces.clone(),
        out: a.out.clone(),
        cluster: a.cluster.clone(),
        node: a.node.clone(),
        job: a.job.clone(),
        hta_scope: a.hta_scope,
        comm_kernels: comm_kernels(&a.comm_kernels)?,
        max_json_value: a.max_json_value.as_deref().map(args::parse_bytes).transpose()?,
        window_ns: args::parse_duration("--window", &humantime::format_duration(a.window).to_string())?,
        launch_gap_ns: ns(a.launch_gap),
        backend: args::backend("--backend", &a.backend)?,
    })
}

/// The table of communication kernels with the `--comm-kernel` patterns.
fn comm_kernels(patterns: &[String]) -> anyhow::Result<Arc<CommKernels>> {
    Ok(Arc::new(CommKernels::with_patterns(patterns).context("--comm-kernel")?))
}

/// How the run is read, from the flags `postmortem` and `export trace` share.
pub fn run_options(a: &RunArgs) -> anyhow::Result<RunOptions> {
    let mut overrides = Vec::new();
    if let Some(p) = a.peak_flops {
        let Some(dt) = &a.dtype else { anyhow::bail!("--peak-flops needs --dtype") };
        overrides.push(PeakOverride { gpu: String::new(), dtype: dt.clone(), flops_per_s: p });
    }
    let comm = comm_kernels(&a.comm_kernels)?;
    Ok(RunOptions {
        inputs: a.inputs.clone(),
        job: a.job.clone(),
        window_ns: a.window.map(|d| ns(d).max(1)),
        launch_gap_ns: ns(a.launch_gap),
        lateness_ns: a.lateness.map(ns),
        sample_period_ns: ns(a.sample_period).max(1),
        kineto: KinetoOptions {
            cluster: "kineto".into(),
            node: None,
            job_id: a.job.clone(),
            hta_scope: a.hta_scope,
            comm_kernels: comm.clone(),
            max_value_bytes: a.max_json_value.as_deref().map(args::parse_bytes).transpose()?,
        },
        flops_per_step: a.flops_per_step,
        dtype: a.dtype.clone(),
        gpu_name: a.gpu_name.clone(),
        peaks: PeakTable::new(overrides)?,
        progress: !a.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        comm_kernels: comm,
    })
}

pub fn postmortem_options(a: &PostmortemArgs) -> anyhow::Result<PostmortemOptions> {
    Ok(PostmortemOptions {
        run: run_options(&a.run)?,
        backend: args::backend("--backend", &a.run.backend)?,
        top_kernels: a.top_kernels,
        thresholds: Default::default(),
    })
}

pub fn postmortem(a: PostmortemArgs) -> anyhow::Result<()> {
    let opts = postmortem_options(&a)?;
    let mut report = postmortem::postmortem(&opts)?;
    if a.trace {
        let e = ExportOptions {
            run: opts.run.clone(),
            backend: opts.backend,
            out: export::default_path(&a.out),
            max_events: a.max_events,
            from_ns: None,
            to_ns: None,
        };
        std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
        let s = export::export_trace(&e)?;
        if let Some(m) = s.truncation(a.max_events) {
            eprintln!("strand postmortem: {m}");
        }
        report.timeline = Some("trace.json".into());
    }
    postmortem::write_outputs(&a.out, &report)?;
    eprintln!(
        "strand postmortem: {} GPUs, {}, {} finding(s) → {}",
        report.gpus.len(),
        strand_render::fmt_duration(report.end_ns - report.start_ns),
        report.findings.len(),
        a.out.join("report.html").display()
    );
    Ok(())
}

pub fn export(cmd: ExportCommand) -> anyhow::Result<()> {
    let ExportCommand::Trace(a) = cmd;
    let opts = ExportOptions {
        run: run_options(&a.run)?,
        backend: args::backend("--backend", &a.run.backend)?,
        out: a.out.clone(),
        max_events: a.max_events,
        from_ns: a.from.map(ns),
        to_ns: a.to.map(ns),
    };
    let s = export::export_trace(&opts)?;
    if let Some(m) = s.truncation(a.max_events) {
        eprintln!("strand export trace: {m}");
    }
    eprintln!(
        "strand export trace: {} GPUs, {} kernels, {} collectives, {} window samples, {} steps → {} (open in ui.perfetto.dev or chrome://tracing)",
        s.gpus,
        s.kernels,
        s.collectives,
        s.counters,
        s.steps,
        a.out.display()
    );
    Ok(())
}
