//! The report as one self-contained HTML page (inline CSS and SVG, no
//! script, no network), a maud template: every value is escaped as it is
//! spliced in.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use strand_analysis::accounting::{LEAVES, Leaf};
use strand_render::svg::{lines, stacked_bars};
use strand_schemas::clock::rfc3339;

use super::markdown::{cells, columns};
use super::{Breakdown, Report, Slice};

const CSS: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 6px}td.n{text-align:right}.critical{color:#b71c1c}.warning{color:#e65100}\
.big{font-size:20px}details{margin:.3em 0}pre{background:#f5f5f5;padding:.5em;white-space:pre-wrap}";

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

fn chart(slices: &[Slice], limit: usize) -> Markup {
    let names: Vec<(&str, &str)> = categories(&Breakdown::default()).iter().map(|c| (c.0, c.1)).collect();
    let rows: Vec<(String, Vec<f64>)> = slices
        .iter()
        .take(limit)
        .map(|s| (s.key.clone(), categories(&s.hours).iter().map(|c| c.2).collect()))
        .collect();
    stacked_bars(&rows, &names, "GPU-h")
}

fn table(key: &str, slices: &[Slice], limit: usize) -> Markup {
    html! {
        table {
            tr {
                th { (key) }
                @for c in columns() { th { (c) } }
            }
            @for s in slices.iter().take(limit) {
                tr {
                    td { (s.key) }
                    @for c in cells(s.gpus, &s.hours) { td.n { (c) } }
                }
            }
        }
        @if slices.len() > limit {
            p { (slices.len() - limit) " more in stranded.json." }
        }
    }
}

/// `12`, or `–` when unknown.
fn f0(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.0}"))
}

pub fn render(r: &Report, top: usize) -> String {
    let t = &r.totals;
    let labels: Vec<String> =
        r.trends.iter().map(|p| p.bucket.get(5..16).unwrap_or(&p.bucket).replace('T', " ")).collect();
    let series = vec![
        ("powered", r.trends.iter().map(|p| p.hours.powered_gpu_h).collect()),
        ("productive compute", r.trends.iter().map(|p| p.hours.leaf(Leaf::ProductiveCompute)).collect()),
        ("stranded", r.trends.iter().map(|p| p.hours.stranded_gpu_h).collect()),
    ];
    let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let page = html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                title { (r.title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { (r.title) }
                p {
                    (r.start) " to " (r.end)
                    @for (k, v) in &r.filters { " · " (k) ": " (v.join(", ")) }
                }
                p.big {
                    b { (format!("{:.1}", t.powered_gpu_h)) } " GPU-hours powered, "
                    b { (format!("{:.1}", t.stranded_gpu_h)) }
                    (format!(
                        " stranded ({:.1}%): idle while held {:.1}, ghost compute {:.1}, unallocatable {:.1}. Recoverable: ",
                        100.0 * t.stranded_gpu_h / t.powered_gpu_h.max(1e-12),
                        t.idle_gpu_h - t.leaf(Leaf::IdleNoProcess),
                        t.ghost_gpu_h,
                        t.unallocatable_gpu_h,
                    ))
                    b { (format!("{:.1}", r.recoverable_gpu_h)) } " GPU-hours."
                }
                h2 { "Where the time went, by cluster" }
                (chart(&r.by_cluster, 20))
                h2 { "Top findings" }
                @if r.findings.is_empty() { p { "No findings." } }
                @for f in r.findings.iter().take(top) {
                    details {
                        summary {
                            span class=(f.severity) { (f.severity) } " "
                            b { (f.code) " " (f.kind) }
                            " (" (f.scope) ", " (rfc3339(f.start_ns)) "): " (f.summary)
                        }
                        pre { "figures: " (json(&f.figures)) "\nevidence: " (json(&f.evidence)) }
                    }
                }
                @if r.findings.len() > top {
                    p { (r.findings.len() - top) " more findings in stranded.json." }
                }
                h2 { "Recoverable capacity" }
                table {
                    tr { th { "kind" } th { "GPU-hours" } th { "assumption" } }
                    @for x in &r.recoverable {
                        tr { td { (x.kind) } td.n { (format!("{:.2}", x.gpu_h)) } td { (x.assumption) } }
                    }
                }
                h2 { "Trend" }
                (lines(&labels, &series, "GPU-h"))
                h2 { "By cluster" }
                (table("cluster", &r.by_cluster, 50))
                h2 { "By GPU model" }
                (table("GPU model", &r.by_gpu_model, 50))
                h2 { "Nodes with the most stranded capacity" }
                (chart(&r.by_node, 15))
                (table("node", &r.by_node, 25))
                h2 { "Jobs with the most stranded capacity" }
                (table("job", &r.by_job, 25))
                h2 { "Jobs: goodput and recovery" }
                table {
                    tr {
                        @for h in ["job", "wall h", "GPUs", "goodput", "startup s", "ckpt save s", "restore s", "wasted s",
                                   "recovery s", "other s", "failures", "MTTR s", "ckpt interval s", "Young s"] {
                            th { (h) }
                        }
                    }
                    @for j in &r.jobs {
                        @let b = &j.badput;
                        tr {
                            td { (j.cluster) "/" (j.job_id) }
                            td.n { (format!("{:.2}", j.wall_s / 3600.0)) }
                            td.n { (j.gpus) }
                            td.n { (j.goodput.map_or("unknown (no step source)".into(), |g| format!("{:.1}%", g * 100.0))) }
                            @for s in [b.startup_s, b.checkpoint_save_s, b.checkpoint_restore_s, b.wasted_progress_s, b.recovery_s, b.other_s] {
                                td.n { (format!("{s:.0}")) }
                            }
                            td.n { (j.failures.len()) }
                            td.n { (f0(j.mttr_s)) }
                            td.n { (f0(j.checkpoint_interval_s)) }
                            td.n { (f0(j.young_interval_s)) }
                        }
                    }
                }
                h2 { "Notes" }
                ul {
                    @for n in &r.notes { li { (n) } }
                    li {
                        "Exact sync stalls: " (r.stalls.matched.instances_exact) " instances matched across ranks ("
                        (r.stalls.matched.instances_host_timed) " host-timed), " (r.stalls.matched.instances_incomplete)
                        " incomplete, " (r.stalls.matched.instances_inconsistent) " inconsistent."
                    }
                    li { "Definitions: docs/findings.md, docs/goodput.md. Computed in " (format!("{:.1}", r.elapsed_s)) " s." }
                }
            }
        }
    };
    page.into_string()
}
