//! `summary.md`: the headline figures of [`Report`] as Markdown.

use std::fmt::Write;

use strand_analysis::accounting::{Group, LEAVES, Leaf};

use super::html::{fmt_duration, gpu_label, pct};
use super::report::Report;

pub fn render(r: &Report) -> String {
    let t = &r.run;
    let mut o = String::new();
    let _ = writeln!(o, "# strand postmortem{}\n", r.job.as_deref().map_or(String::new(), |j| format!(": job {j}")));
    let _ = writeln!(
        o,
        "{} GPU(s), {} of run, windows of {} ({}), launch-gap threshold {}.\n",
        r.gpus.len(),
        fmt_duration(r.end_ns - r.start_ns),
        fmt_duration(r.window_ns),
        r.windows_source,
        fmt_duration(r.launch_gap_ns)
    );
    let _ = writeln!(o, "## Findings\n");
    if r.findings.is_empty() {
        let _ = writeln!(
            o,
            "No finding above the thresholds of docs/findings.md (or not enough data to judge; see Notes)."
        );
    }
    for f in &r.findings {
        let query = f.evidence.get("query").and_then(|q| q.as_str()).unwrap_or("");
        let _ = writeln!(
            o,
            "- **{} · {}**: {}  \n  evidence: `{}`",
            f.severity,
            f.kind,
            f.summary,
            query.replace('`', "'")
        );
    }
    let _ = writeln!(o, "\n## Where the GPU time went\n");
    let _ = writeln!(o, "| category | time | share |\n|---|---|---|");
    let _ = writeln!(o, "| GPU time (split by {}) | {} | |", t.split_source(), fmt_duration(t.powered_ns()));
    for l in LEAVES.iter().filter(|l| t.leaf(**l) > 0) {
        let _ = writeln!(o, "| {} | {} | {} |", l.label(), fmt_duration(t.leaf(*l)), pct(t.share(t.leaf(*l))));
    }
    let _ = writeln!(o, "\n| figure | value |\n|---|---|");
    let _ = writeln!(o, "| compute (\\|∪C\\|) | {} |", pct(t.share(t.int("compute_ns"))));
    let _ = writeln!(o, "| comm exposed | {} |", pct(t.share(t.int("comm_exposed_ns"))));
    let _ = writeln!(o, "| ghost compute | {} |", fmt_duration(t.ghost_ns()));
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
    let _ = writeln!(o, "\n## Per GPU\n");
    let _ = writeln!(
        o,
        "| GPU | compute | comm exposed | sync stall | memcpy exposed | idle | host-bound idle | launch-gap idle | other idle | overlap |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for g in &r.gpus {
        let x = &g.time;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            gpu_label(g),
            pct(x.share(x.int("compute_ns"))),
            pct(x.share(x.int("comm_exposed_ns"))),
            if x.int("comm_ns") > 0 { fmt_duration(x.leaf(Leaf::SyncStall)) } else { "—".into() },
            pct(x.share(x.int("memcpy_exposed_ns"))),
            pct(x.share(x.group(Group::Idle))),
            fmt_duration(x.leaf(Leaf::IdleHostBound)),
            fmt_duration(x.leaf(Leaf::IdleLaunchGap)),
            fmt_duration(x.leaf(Leaf::IdleOther)),
            pct(x.overlap_ratio())
        );
    }
    let _ = writeln!(o, "\n## Top kernels by time\n");
    let _ = writeln!(o, "| kernel | category | calls | time | share |\n|---|---|---|---|---|");
    for k in r.top_kernels.iter().take(10) {
        let name: String = k.name.chars().take(80).collect::<String>().replace('|', "\\|");
        let _ = writeln!(
            o,
            "| `{name}` | {} | {} | {} | {:.1}% |",
            k.category,
            k.count,
            fmt_duration(k.total_ns),
            k.share * 100.0
        );
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
