//! `strand postmortem <run directory or files>`: where every GPU-second of a
//! training run went, and what went wrong (DESIGN §1, ML engineer after a run).
//!
//! Inputs: a strand dataset directory (the agent's data directory, the
//! collector's dataset, or `strand import` output), strand Parquet files, or
//! PyTorch profiler (Kineto) traces ([`crate::run`] reads them). The figures
//! are the one accounting (`strand_analysis::accounting`) over the run's
//! windows, with the exact sync stalls of the one collective matcher
//! (`strand_analysis::collective`) where the windows only had estimates, and
//! the findings are the one engine's (`strand_analysis::findings`): the same
//! data gives the same answer here as in `strand report stranded`.
//!
//! Outputs, in the output directory: `report.html` (self-contained, charts
//! as inline SVG, findings first), `summary.md`, `report.json` (every figure).

pub mod html;
mod markdown;
pub mod report;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use strand_analysis::findings::{self, FindingView, Inputs, JobTime, Stragglers, Thresholds, recovery};
use strand_analysis::{GpuKey, GpuTime};
use strand_kernels::{Backend, Reducer};
use strand_schemas::clock::utc_now_ns;

pub use report::Report;

use crate::run::{self, Run, RunOptions};

/// What `strand postmortem` does.
#[derive(Debug, Clone)]
pub struct PostmortemOptions {
    pub run: RunOptions,
    pub backend: Backend,
    /// Kernels listed in "top kernels".
    pub top_kernels: usize,
    pub thresholds: Thresholds,
}

/// Writes report.html, summary.md and report.json into `out`.
pub fn write_outputs(out: &Path, report: &Report) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    fs::write(out.join("report.json"), json)
        .with_context(|| format!("cannot write {}", out.join("report.json").display()))?;
    fs::write(out.join("summary.md"), markdown::render(report))
        .with_context(|| format!("cannot write {}", out.join("summary.md").display()))?;
    fs::write(out.join("report.html"), html::render(report))
        .with_context(|| format!("cannot write {}", out.join("report.html").display()))?;
    Ok(())
}

/// One GPU's windows rolled up (per job too, for wasted progress).
struct GpuAgg {
    uuid: Arc<str>,
    name: Option<Arc<str>>,
    job: Option<String>,
    coverage: std::collections::BTreeSet<String>,
    start: i64,
    end: i64,
    time: GpuTime,
    by_job: BTreeMap<Option<String>, GpuTime>,
    timeline: Vec<Option<GpuTime>>,
}

/// Runs the whole postmortem and returns its figures.
pub fn postmortem(opts: &PostmortemOptions) -> anyhow::Result<Report> {
    let reducer = Arc::new(Reducer::new(opts.backend)?);
    let run = run::read(&opts.run, &reducer, |_| Ok(()))?;
    report_of(opts, run, &reducer)
}

fn report_of(opts: &PostmortemOptions, run: Run, reducer: &Reducer) -> anyhow::Result<Report> {
    let mut notes = run.notes.clone();
    // Collectives across ranks: the one matcher.
    let matched = run.matched(reducer)?;
    let mut stragglers = Stragglers::new();
    for s in &matched.stalls {
        stragglers.update(s);
    }
    if matched.stats.instances_incomplete > 0 {
        notes.push(format!(
            "{} collective instances lacked a rank (peer data missing): their stalls stay estimates",
            matched.stats.instances_incomplete
        ));
    }

    // The accounting, per GPU, per bucket, per job.
    let (start, end) = match (run.windows.iter().map(|w| w.start_ns).min(), run.windows.iter().map(|w| w.end_ns).max())
    {
        (Some(s), Some(e)) => (s, e.max(s + 1)),
        _ => anyhow::bail!(
            "no windows: the input has no GPU activity or samples{}",
            opts.run.job.as_deref().map_or(String::new(), |j| format!(" of job {j:?}"))
        ),
    };
    let window_ns = run.window_ns.max(1);
    let bucket_ns = window_ns * ((((end - start) / window_ns).max(1) + 299) / 300).max(1);
    let t0 = start.div_euclid(window_ns) * window_ns;
    let n_buckets = (((end - t0).max(1) + bucket_ns - 1) / bucket_ns).max(1) as usize;
    let bucket = |t: i64| (((t - t0).max(0) / bucket_ns) as usize).min(n_buckets - 1);
    let mut gpus: BTreeMap<GpuKey, GpuAgg> = BTreeMap::new();
    let mut buckets = vec![GpuTime::new(); n_buckets];
    type JobAcc = (GpuTime, std::collections::BTreeSet<GpuKey>, i64, i64);
    let mut jobs: BTreeMap<(Arc<str>, String), JobAcc> = BTreeMap::new();
    for w in &run.windows {
        let e = matched.exact_stall(w);
        let key = GpuKey { node: w.node.clone(), gpu_index: w.gpu_index };
        let g = gpus.entry(key.clone()).or_insert_with(|| GpuAgg {
            uuid: w.gpu_uuid.clone(),
            name: None,
            job: None,
            coverage: Default::default(),
            start: w.start_ns,
            end: w.end_ns,
            time: GpuTime::new(),
            by_job: BTreeMap::new(),
            timeline: vec![None; n_buckets],
        });
        if w.gpu_name.is_some() {
            g.name = w.gpu_name.clone();
        }
        if w.job_id.is_some() {
            g.job = w.job_id.clone();
        }
        g.coverage.extend(w.coverage.split(',').filter(|c| !c.is_empty()).map(str::to_string));
        g.start = g.start.min(w.start_ns);
        g.end = g.end.max(w.end_ns);
        g.time.update(w, e);
        g.by_job.entry(w.job_id.clone()).or_default().update(w, e);
        g.timeline[bucket(w.start_ns)].get_or_insert_with(GpuTime::new).update(w, e);
        buckets[bucket(w.start_ns)].update(w, e);
        if let Some(j) = &w.job_id {
            let x = jobs
                .entry((w.cluster.clone(), j.clone()))
                .or_insert_with(|| (GpuTime::new(), Default::default(), i64::MAX, i64::MIN));
            x.0.update(w, e);
            x.1.insert(key);
            x.2 = x.2.min(w.start_ns);
            x.3 = x.3.max(w.end_ns);
        }
    }

    // The findings engine.
    let job_times: Vec<JobTime> = jobs
        .iter()
        .map(|((cluster, job_id), (time, g, first, last))| JobTime {
            cluster: cluster.clone(),
            job_id: job_id.clone(),
            gpus: g.len(),
            first_ns: *first,
            last_ns: *last,
            time: time.clone(),
        })
        .collect();
    let job_windows = recovery::rollup::job_windows(&run.windows, window_ns);
    let phases = recovery::rollup::job_phases(&run.steps);
    let failures = recovery::rollup::job_failures(&run.processes, &run.gpu_events, &run.calls);
    let io = recovery::rollup::job_io(&run.process_samples, window_ns);
    let gpu_powered: HashMap<(Arc<str>, Arc<str>, i32), i64> = run.windows.iter().fold(HashMap::new(), |mut m, w| {
        *m.entry((w.cluster.clone(), w.node.clone(), w.gpu_index)).or_default() += w.end_ns - w.start_ns;
        m
    });
    let inputs = Inputs {
        jobs: &job_times,
        stragglers: (!matched.stalls.is_empty()).then_some(&stragglers),
        gpu_powered: Some(&gpu_powered),
        recovery: (!job_windows.is_empty()).then(|| recovery::RecoveryInput {
            windows: &job_windows,
            io: &io,
            phases: &phases,
            failures: &failures,
            window_ns,
        }),
        ..Inputs::default()
    };
    let outcome = findings::detect(&inputs, &opts.thresholds, utc_now_ns());
    if job_windows.is_empty() && !run.windows.is_empty() {
        notes.push("no job id in the input: goodput and recovery findings need one (`--job` at import, or the agent's job attribution)".into());
    }

    // Wasted progress of each job moves from productive compute to ghost, per GPU.
    for j in &outcome.jobs {
        let wasted = (j.wasted_gpu_s * 1e9).round() as i64;
        if wasted <= 0 {
            continue;
        }
        let job = Some(j.job_id.clone());
        let mut parts: Vec<&mut GpuTime> = gpus.values_mut().filter_map(|g| g.by_job.get_mut(&job)).collect();
        let before: Vec<i64> = parts.iter().map(|p| p.wasted_ns()).collect();
        GpuTime::apportion_wasted(&mut parts, wasted);
        let after: Vec<i64> = parts.iter().map(|p| p.wasted_ns()).collect();
        let moved: Vec<i64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        for (g, m) in gpus.values_mut().filter(|g| g.by_job.contains_key(&job)).zip(moved) {
            g.time.add_wasted(m);
        }
    }

    // The report.
    let mut run_total = GpuTime::new();
    let mut gpu_reports = Vec::new();
    for (key, g) in gpus {
        run_total.merge(&g.time);
        let sv: Vec<report::StreamView> = run
            .streams
            .get(&key)
            .map(|v| {
                v.iter()
                    .map(|(s, x)| report::StreamView {
                        stream: *s,
                        host_wait_ns: x.host_wait_ns,
                        kernel_wait_ns: x.kernel_wait_ns,
                        other_ns: x.other_ns,
                        kernels: x.kernels,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total = report::StreamView {
            stream: -1,
            host_wait_ns: sv.iter().map(|s| s.host_wait_ns).sum(),
            kernel_wait_ns: sv.iter().map(|s| s.kernel_wait_ns).sum(),
            other_ns: sv.iter().map(|s| s.other_ns).sum(),
            kernels: sv.iter().map(|s| s.kernels).sum(),
        };
        gpu_reports.push(report::GpuReport {
            node: key.node.to_string(),
            gpu_index: key.gpu_index,
            gpu_uuid: g.uuid.to_string(),
            gpu_name: g.name.map(|n| n.to_string()),
            rank: run.ranks.get(&key).copied(),
            kernel_records: run.kernel_records.get(&key).copied().unwrap_or(0),
            job_id: g.job,
            coverage: g.coverage.into_iter().collect(),
            start_ns: g.start,
            end_ns: g.end,
            time: g.time,
            timeline: g.timeline,
            streams: sv,
            stream_idle_total: total,
        });
    }
    gpu_reports.sort_by_key(|g| (g.rank.unwrap_or(i32::MAX), g.node.clone(), g.gpu_index));
    let kernels_total_ns: i64 = run.kernels.values().map(|k| k.total).sum();
    let distinct_kernels = run.kernels.len();
    let mut top: Vec<_> = run.kernels.into_iter().collect();
    top.sort_by(|a, b| b.1.total.cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
    let top_kernels = top
        .into_iter()
        .take(opts.top_kernels)
        .map(|(n, k)| report::KernelRow {
            name: n.to_string(),
            category: k.category,
            count: k.count,
            total_ns: k.total,
            min_ns: if k.min == i64::MAX { 0 } else { k.min },
            max_ns: k.max,
            share: if kernels_total_ns > 0 { k.total as f64 / kernels_total_ns as f64 } else { 0.0 },
        })
        .collect();
    if run.recorded_windows {
        notes.push(format!(
            "the figures are the input's `windows` rows ({} of them, {} long), as the agent exported them",
            run.windows.len(),
            strand_render::fmt_duration(window_ns)
        ));
    }
    let checkpoints = run
        .steps
        .iter()
        .filter(|s| s.phase.starts_with("checkpoint"))
        .map(|s| (s.node.to_string(), s.rank, s.phase.clone(), s.start_ns, s.end_ns - s.start_ns))
        .collect();
    Ok(Report {
        strand_version: env!("CARGO_PKG_VERSION").to_string(),
        inputs: opts.run.inputs.iter().map(|p| p.display().to_string()).collect(),
        job: opts.run.job.clone(),
        windows_source: if run.recorded_windows { "recorded" } else { "built" },
        window_ns,
        bucket_ns,
        launch_gap_ns: opts.run.launch_gap_ns,
        start_ns: start,
        end_ns: end,
        findings: outcome.findings.iter().map(FindingView::from).collect(),
        gpus: gpu_reports,
        run: run_total,
        buckets,
        jobs: outcome.jobs,
        collectives: matched.stats,
        top_kernels,
        kernel_records: run.kernel_records.values().sum(),
        kernels_total_ns,
        distinct_kernels,
        steps: report::step_series(&run.steps),
        checkpoints,
        notes,
        stats: serde_json::to_value(run.stats)?,
        timeline: None,
    })
}
