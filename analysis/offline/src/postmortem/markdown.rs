//! `summary.md`: the headline figures of [`Report`] as Markdown.

use std::fmt::Write;

use super::html::{fmt_duration, gpu_label, pct};
use super::report::Report;

pub fn render(r: &Report) -> String {
    let t = &r.run;
    let mut o = String::new();
    let _ = writeln!(o, "# strand postmortem\n");
    let _ = writeln!(
        o,
        "{} GPU(s), {} of run, windows of {}, launch-gap threshold {}.\n",
        r.gpus.len(),
        fmt_duration(r.end_ns - r.start_ns),
        fmt_duration(r.window_ns),
        fmt_duration(r.launch_gap_ns)
    );
    let _ = writeln!(o, "## Where the GPU time went\n");
    let _ = writeln!(o, "| figure | value |\n|---|---|");
    let _ = writeln!(o, "| GPU time | {} ({} measured by kernel records) |", fmt_duration(t.window_ns), fmt_duration(t.measured_ns));
    let _ = writeln!(o, "| compute | {} |", pct(t.share(t.compute_ns)));
    let _ = writeln!(o, "| comm exposed | {} |", pct(t.share(t.comm_exposed_ns)));
    if let (Some(tr), Some(st)) = (t.comm_transfer_ns.0, t.sync_stall_ns.0) {
        let est = if t.sync_stall_estimated_windows > 0 { " (estimated where peers were missing)" } else { "" };
        let _ = writeln!(o, "| ↳ transfer / sync stall | {} / {}{est} |", fmt_duration(tr), fmt_duration(st));
    }
    let _ = writeln!(o, "| memcpy exposed | {} |", pct(t.share(t.memcpy_exposed_ns)));
    let _ = writeln!(o, "| idle | {} |", pct(t.share(t.idle_ns)));
    let _ = writeln!(o, "| comm overlapped by compute | {} of communication |", pct(t.overlap_ratio()));
    match (t.mfu(), t.tensor_estimate()) {
        (Some(m), _) => {
            let _ = writeln!(o, "| MFU | {} |", pct(Some(m)));
        }
        (None, Some(e)) => {
            let _ = writeln!(o, "| tensor-pipe estimate (**estimate, not MFU**) | {} |", pct(Some(e)));
        }
        _ => {
            let _ = writeln!(o, "| MFU | not computed (no model FLOPs) |");
        }
    }
    match t.reported_utilization() {
        Some(u) => {
            let _ = writeln!(o, "| reported utilization (NVML) | {} |", pct(Some(u)));
        }
        None => {
            let _ = writeln!(o, "| kernel busy (no NVML samples) | {} |", pct(t.busy_ratio()));
        }
    }
    if let Some(g) = t.ghost_ns.0 {
        let _ = writeln!(o, "| ghost compute | {} |", fmt_duration(g));
    }
    let _ = writeln!(o, "\n## Per GPU\n");
    let _ = writeln!(o, "| GPU | compute | comm exposed | sync stall | memcpy exposed | idle | host-bound idle | launch-gap idle | other idle | overlap |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for g in &r.gpus {
        let x = &g.totals;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            gpu_label(g),
            pct(x.share(x.compute_ns)),
            pct(x.share(x.comm_exposed_ns)),
            x.sync_stall_ns.0.map_or("—".into(), fmt_duration),
            pct(x.share(x.memcpy_exposed_ns)),
            pct(x.share(x.idle_ns)),
            x.idle_host_bound_ns.0.map_or("—".into(), fmt_duration),
            x.idle_launch_gap_ns.0.map_or("—".into(), fmt_duration),
            x.idle_other_ns.0.map_or("—".into(), fmt_duration),
            pct(x.overlap_ratio())
        );
    }
    let _ = writeln!(o, "\n## Top kernels by time\n");
    let _ = writeln!(o, "| kernel | category | calls | time | share |\n|---|---|---|---|---|");
    for k in r.top_kernels.iter().take(10) {
        let name: String = k.name.chars().take(80).collect::<String>().replace('|', "\\|");
        let _ = writeln!(o, "| `{name}` | {} | {} | {} | {:.1}% |", k.category, k.count, fmt_duration(k.total_ns), k.share * 100.0);
    }
    if !r.steps.is_empty() {
        let _ = writeln!(o, "\n## Steps\n\n| rank | node | source | steps | median step |\n|---|---|---|---|---|");
        for s in &r.steps {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                s.rank.map_or("?".into(), |r| r.to_string()),
                s.node,
                s.source,
                s.steps.len(),
                s.median_ns.map_or("—".into(), fmt_duration)
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    let _ = writeln!(o, "\nEvery figure is in `report.json`; charts in `report.html`.");
    o
}
