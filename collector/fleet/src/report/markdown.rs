//! The report as Markdown.

use std::fmt::Write;

use strand_analysis::accounting::Leaf;
use strand_schemas::clock::rfc3339;

use super::{Breakdown, Report, Slice};

fn pct(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.1}%", 100.0 * a / b) } else { "–".into() }
}

/// Header and cells of the category table: every category by kind.
pub fn columns() -> Vec<&'static str> {
    let mut c = vec!["GPUs", "powered", "held", "reported busy", "compute (|∪C|)"];
    c.extend(strand_analysis::LEAVES.iter().map(|l| l.label()));
    c.extend(["unallocatable", "stranded", "stranded %"]);
    c
}

pub fn cells(gpus: usize, h: &Breakdown) -> Vec<String> {
    let f = |v: f64| format!("{v:.2}");
    let mut c =
        vec![gpus.to_string(), f(h.powered_gpu_h), f(h.held_gpu_h), f(h.reported_busy_gpu_h), f(h.compute_gpu_h)];
    c.extend(h.leaves_gpu_h.iter().map(|(_, v)| f(*v)));
    c.extend([f(h.unallocatable_gpu_h), f(h.stranded_gpu_h), pct(h.stranded_gpu_h, h.powered_gpu_h)]);
    c
}

fn table(out: &mut String, title: &str, key: &str, slices: &[Slice], limit: usize) {
    let _ = writeln!(out, "\n## {title}\n");
    if slices.is_empty() {
        let _ = writeln!(out, "No data.");
        return;
    }
    let _ = writeln!(out, "| {key} | {} |", columns().join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(columns().len()));
    for s in slices.iter().take(limit) {
        let _ = writeln!(out, "| {} | {} |", s.key.replace('|', "\\|"), cells(s.gpus, &s.hours).join(" | "));
    }
    if slices.len() > limit {
        let _ = writeln!(out, "\n{} more in stranded.json.", slices.len() - limit);
    }
}

pub fn render(r: &Report, top: usize) -> String {
    let t = &r.totals;
    let mut out = format!("# {}\n\n{} to {}", r.title, r.start, r.end);
    for (k, v) in &r.filters {
        let _ = write!(out, ", {k} {}", v.join(", "));
    }
    let _ = writeln!(out, "\n\nGPU-hours unless said otherwise.\n");
    let _ = writeln!(
        out,
        "**{:.1} GPU-hours powered, {:.1} stranded ({})**: idle while held {:.1}, ghost compute {:.1} (sync stall {:.2}, hollow busy {:.2}, wasted progress {:.2}), unallocatable {:.2}. Recoverable estimate: **{:.1} GPU-hours**.",
        t.powered_gpu_h,
        t.stranded_gpu_h,
        pct(t.stranded_gpu_h, t.powered_gpu_h),
        t.idle_gpu_h - t.leaf(Leaf::IdleNoProcess),
        t.ghost_gpu_h,
        t.leaf(Leaf::SyncStall),
        t.leaf(Leaf::HollowBusy),
        t.leaf(Leaf::WastedProgress),
        t.unallocatable_gpu_h,
        r.recoverable_gpu_h
    );
    let _ = writeln!(out, "\n## Where the time went\n\n| category | GPU-hours | share of powered |\n|---|---:|---:|");
    for (name, _, v) in super::html::categories(t) {
        let _ = writeln!(out, "| {name} | {v:.2} | {} |", pct(v, t.powered_gpu_h));
    }
    let _ = writeln!(out, "\n## Top findings\n");
    if r.findings.is_empty() {
        let _ = writeln!(out, "No findings.");
    }
    for f in r.findings.iter().take(top) {
        let _ = writeln!(
            out,
            "- **{} {} {}** ({}, {}): {}",
            f.severity,
            f.code,
            f.kind,
            f.scope,
            rfc3339(f.start_ns),
            f.summary
        );
        if let Some(q) = f.evidence.get("query").and_then(|q| q.as_str()) {
            let _ = writeln!(out, "  - evidence: `{q}`");
        }
    }
    if r.findings.len() > top {
        let _ = writeln!(out, "\n{} more findings in stranded.json.", r.findings.len() - top);
    }
    let _ = writeln!(out, "\n## Recoverable capacity\n\n| kind | GPU-hours | assumption |\n|---|---:|---|");
    for x in &r.recoverable {
        let _ = writeln!(out, "| {} | {:.2} | {} |", x.kind, x.gpu_h, x.assumption);
    }
    table(&mut out, "By cluster", "cluster", &r.by_cluster, 50);
    table(&mut out, "By GPU model", "GPU model", &r.by_gpu_model, 50);
    table(&mut out, "By node (most stranded first)", "node", &r.by_node, 25);
    table(&mut out, "By job (most stranded first)", "job", &r.by_job, 25);
    let _ = writeln!(
        out,
        "\n## Jobs: goodput and recovery\n\n| job | wall h | GPUs | goodput | startup s | ckpt save s | restore s | wasted s | recovery s | other s | failures | MTTR s | ckpt interval s | Young s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let o = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    for j in &r.jobs {
        let b = &j.badput;
        let _ = writeln!(
            out,
            "| {}/{} | {:.2} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
            j.cluster,
            j.job_id,
            j.wall_s / 3600.0,
            j.gpus,
            j.goodput.map_or("unknown (no step source)".into(), |g| format!("{:.1}%", g * 100.0)),
            b.startup_s,
            b.checkpoint_save_s,
            b.checkpoint_restore_s,
            b.wasted_progress_s,
            b.recovery_s,
            b.other_s,
            j.failures.len(),
            o(j.mttr_s),
            o(j.checkpoint_interval_s),
            o(j.young_interval_s)
        );
    }
    let _ = writeln!(
        out,
        "\n## Trend\n\n| bucket | powered | productive compute | ghost | stranded | stranded % |\n|---|---:|---:|---:|---:|---:|"
    );
    for p in &r.trends {
        let h = &p.hours;
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            p.bucket,
            h.powered_gpu_h,
            h.leaf(Leaf::ProductiveCompute),
            h.ghost_gpu_h,
            h.stranded_gpu_h,
            pct(h.stranded_gpu_h, h.powered_gpu_h)
        );
    }
    let _ = writeln!(out, "\n## Notes\n");
    for n in &r.notes {
        let _ = writeln!(out, "- {n}");
    }
    let _ = writeln!(
        out,
        "- Exact sync stalls: {} instances matched across ranks ({} host-timed), {} incomplete, {} inconsistent; {:.2} GPU-hours of sync stall kept an agent estimate.",
        r.stalls.matched.instances_exact,
        r.stalls.matched.instances_host_timed,
        r.stalls.matched.instances_incomplete,
        r.stalls.matched.instances_inconsistent,
        r.estimated_stall_gpu_h
    );
    let _ = writeln!(out, "- Definitions: docs/findings.md, docs/goodput.md. Computed in {:.1} s.", r.elapsed_s);
    out
}
