//! The report as one self-contained HTML page (inline CSS and SVG, no script, no network).

use std::fmt::Write;

use strand_analysis::accounting::{LEAVES, Leaf};
use strand_render::esc;
use strand_render::svg::{lines, stacked_bars};
use strand_schemas::clock::rfc3339;

use super::markdown::{cells, columns};
use super::{Breakdown, Report, Slice};

/// The exclusive categories of powered GPU time, in the accounting's one
/// order, with the unallocatable part of idle_no_process drawn apart:
/// (label, colour, GPU-hours).
pub fn categories(h: &Breakdown) -> Vec<(&'static str, &'static str, f64)> {
    let mut out = Vec::with_capacity(LEAVES.len() + 1);
    for l in LEAVES {
        let v = h.leaf(l);
        if l == Leaf::IdleNoProcess {
            let un = h.unallocatable_gpu_h.min(v);
            out.push((l.label(), l.colour(), v - un));
            out.push(("unallocatable", "#000000", un));
        } else {
            out.push((l.label(), l.colour(), v));
        }
    }
    out
}

fn chart(slices: &[Slice], limit: usize) -> String {
    let names: Vec<(&str, &str)> = categories(&Breakdown::default()).iter().map(|c| (c.0, c.1)).collect();
    let rows: Vec<(String, Vec<f64>)> = slices
        .iter()
        .take(limit)
        .map(|s| (s.key.clone(), categories(&s.hours).iter().map(|c| c.2).collect()))
        .collect();
    stacked_bars(&rows, &names, "GPU-h")
}

fn table(out: &mut String, key: &str, slices: &[Slice], limit: usize) {
    let _ = write!(out, "<table><tr><th>{key}</th>");
    for c in columns() {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr>");
    for s in slices.iter().take(limit) {
        let _ = write!(out, "<tr><td>{}</td>", esc(&s.key));
        for c in cells(s.gpus, &s.hours) {
            let _ = write!(out, "<td class=n>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    if slices.len() > limit {
        let _ = write!(out, "<p>{} more in stranded.json.</p>", slices.len() - limit);
    }
}

pub fn render(r: &Report, top: usize) -> String {
    let t = &r.totals;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=utf-8><title>{}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:3px 6px}}td.n{{text-align:right}}.critical{{color:#b71c1c}}.warning{{color:#e65100}}\
         .big{{font-size:20px}}details{{margin:.3em 0}}pre{{background:#f5f5f5;padding:.5em;white-space:pre-wrap}}</style></head><body>",
        esc(&r.title)
    );
    let _ = write!(o, "<h1>{}</h1><p>{} to {}", esc(&r.title), r.start, r.end);
    for (k, v) in &r.filters {
        let _ = write!(o, " · {k}: {}", esc(&v.join(", ")));
    }
    let _ = write!(
        o,
        "</p><p class=big><b>{:.1}</b> GPU-hours powered, <b>{:.1}</b> stranded ({:.1}%): idle while held {:.1}, ghost compute {:.1}, unallocatable {:.1}. Recoverable: <b>{:.1}</b> GPU-hours.</p>",
        t.powered_gpu_h,
        t.stranded_gpu_h,
        100.0 * t.stranded_gpu_h / t.powered_gpu_h.max(1e-12),
        t.idle_gpu_h - t.leaf(Leaf::IdleNoProcess),
        t.ghost_gpu_h,
        t.unallocatable_gpu_h,
        r.recoverable_gpu_h
    );
    o += "<h2>Where the time went, by cluster</h2>";
    o += &chart(&r.by_cluster, 20);
    o += "<h2>Top findings</h2>";
    if r.findings.is_empty() {
        o += "<p>No findings.</p>";
    }
    for f in r.findings.iter().take(top) {
        let _ = write!(
            o,
            "<details><summary><span class={}>{}</span> <b>{} {}</b> ({}, {}): {}</summary><pre>figures: {}\nevidence: {}</pre></details>",
            esc(&f.severity),
            esc(&f.severity),
            esc(&f.code),
            esc(&f.kind),
            esc(&f.scope),
            rfc3339(f.start_ns),
            esc(&f.summary),
            esc(&serde_json::to_string_pretty(&f.figures).unwrap_or_default()),
            esc(&serde_json::to_string_pretty(&f.evidence).unwrap_or_default())
        );
    }
    if r.findings.len() > top {
        let _ = write!(o, "<p>{} more findings in stranded.json.</p>", r.findings.len() - top);
    }
    o += "<h2>Recoverable capacity</h2><table><tr><th>kind</th><th>GPU-hours</th><th>assumption</th></tr>";
    for x in &r.recoverable {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=n>{:.2}</td><td>{}</td></tr>",
            esc(&x.kind),
            x.gpu_h,
            esc(&x.assumption)
        );
    }
    o += "</table><h2>Trend</h2>";
    let labels: Vec<String> =
        r.trends.iter().map(|p| p.bucket.get(5..16).unwrap_or(&p.bucket).replace('T', " ")).collect();
    let series = vec![
        ("powered", r.trends.iter().map(|p| p.hours.powered_gpu_h).collect()),
        ("productive compute", r.trends.iter().map(|p| p.hours.leaf(Leaf::ProductiveCompute)).collect()),
        ("stranded", r.trends.iter().map(|p| p.hours.stranded_gpu_h).collect()),
    ];
    o += &lines(&labels, &series, "GPU-h");
    o += "<h2>By cluster</h2>";
    table(&mut o, "cluster", &r.by_cluster, 50);
    o += "<h2>By GPU model</h2>";
    table(&mut o, "GPU model", &r.by_gpu_model, 50);
    o += "<h2>Nodes with the most stranded capacity</h2>";
    o += &chart(&r.by_node, 15);
    table(&mut o, "node", &r.by_node, 25);
    o += "<h2>Jobs with the most stranded capacity</h2>";
    table(&mut o, "job", &r.by_job, 25);
    o += "<h2>Jobs: goodput and recovery</h2><table><tr><th>job</th><th>wall h</th><th>GPUs</th><th>goodput</th><th>startup s</th><th>ckpt save s</th><th>restore s</th><th>wasted s</th><th>recovery s</th><th>other s</th><th>failures</th><th>MTTR s</th><th>ckpt interval s</th><th>Young s</th></tr>";
    let f0 = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    for j in &r.jobs {
        let b = &j.badput;
        let _ = write!(
            o,
            "<tr><td>{}/{}</td><td class=n>{:.2}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{:.0}</td><td class=n>{:.0}</td><td class=n>{:.0}</td><td class=n>{:.0}</td><td class=n>{:.0}</td><td class=n>{:.0}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&j.cluster),
            esc(&j.job_id),
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
            f0(j.mttr_s),
            f0(j.checkpoint_interval_s),
            f0(j.young_interval_s)
        );
    }
    o += "</table><h2>Notes</h2><ul>";
    for n in &r.notes {
        let _ = write!(o, "<li>{}</li>", esc(n));
    }
    let _ = write!(
        o,
        "<li>Exact sync stalls: {} instances matched across ranks ({} host-timed), {} incomplete, {} inconsistent.</li><li>Definitions: docs/findings.md, docs/goodput.md. Computed in {:.1} s.</li></ul></body></html>",
        r.stalls.matched.instances_exact,
        r.stalls.matched.instances_host_timed,
        r.stalls.matched.instances_incomplete,
        r.stalls.matched.instances_inconsistent,
        r.elapsed_s
    );
    o
}
