//! `report.html`: one self-contained page (inline CSS and SVG, no script,
//! no network). It renders [`Report`] and computes nothing of its own.

use std::fmt::Write;

use strand_analysis::GpuTime;
use strand_analysis::accounting::{Group, LEAVES, Leaf};
pub use strand_render::{esc, fmt_duration, pct};

use super::report::{GpuReport, Report};

const C_STALL: &str = "#c62828";
const C_COMM: &str = "#5c6bc0";
const C_COPY: &str = "#f9a825";
const C_COMPUTE: &str = "#2e7d32";
/// Per-GPU charts show at most this many GPUs.
const MAX_ROWS: usize = 64;

pub fn gpu_label(g: &GpuReport) -> String {
    match g.rank {
        Some(r) => format!("rank {r} · {} GPU {}", g.node, g.gpu_index),
        None => format!("{} GPU {}", g.node, g.gpu_index),
    }
}

/// At most `n` characters, with an ellipsis when cut.
fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

/// A row label that fits the label column; the full text is its tooltip.
fn label(o: &mut String, x: f64, y: f64, s: &str) {
    let _ = write!(
        o,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"end\"><title>{}</title>{}</text>",
        esc(s),
        esc(&shorten(s, 32))
    );
}

/// The exclusive segments of a total, in the accounting's one order: (label, ns, colour).
fn segments(t: &GpuTime) -> Vec<(&'static str, i64, &'static str)> {
    LEAVES.iter().map(|l| (l.label(), t.leaf(*l), l.colour())).filter(|s| s.1 > 0).collect()
}

/// The leaves some GPU of the run has, for legends.
fn leaf_legend(r: &Report, group: Option<Group>) -> Vec<(&'static str, &'static str)> {
    LEAVES
        .iter()
        .filter(|l| group.is_none_or(|g| l.group() == g))
        .filter(|l| r.run.leaf(**l) > 0)
        .map(|l| (l.label(), l.colour()))
        .collect()
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut o = String::from("<div class=\"legend\">");
    for (name, col) in items {
        let _ = write!(o, "<span><i style=\"background:{col}\"></i>{}</span>", esc(name));
    }
    o.push_str("</div>");
    o
}

/// One horizontal stacked bar of `segs` scaled to `width`.
fn hbar(o: &mut String, x: f64, y: f64, width: f64, h: f64, segs: &[(&str, i64, &str)], label: &str) {
    let total: i64 = segs.iter().map(|s| s.1.max(0)).sum();
    if total <= 0 {
        return;
    }
    let mut cx = x;
    for (name, ns, col) in segs {
        let w = width * (*ns).max(0) as f64 / total as f64;
        if w > 0.0 {
            let _ = write!(
                o,
                "<rect x=\"{cx:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{h:.2}\" fill=\"{col}\"><title>{}: {} — {} ({:.1}%)</title></rect>",
                esc(label),
                esc(name),
                fmt_duration(*ns),
                100.0 * *ns as f64 / total as f64
            );
        }
        cx += w;
    }
}

fn svg_open(o: &mut String, w: f64, h: f64, title: &str) {
    let _ = write!(
        o,
        "<svg class=\"chart\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
}

fn text(o: &mut String, x: f64, y: f64, anchor: &str, s: &str) {
    let _ = write!(o, "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{}</text>", esc(s));
}

/// Run-level stacked bars, one per GPU.
fn chart_gpu_totals(r: &Report) -> String {
    let rows: Vec<&GpuReport> = r.gpus.iter().take(MAX_ROWS).collect();
    let (lw, bw, rh) = (230.0, 640.0, 22.0);
    let h = rows.len() as f64 * rh + 10.0;
    let mut o = String::new();
    svg_open(&mut o, lw + bw + 20.0, h, "GPU time by category per GPU");
    for (i, g) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * rh;
        label(&mut o, lw - 8.0, y + 14.0, &gpu_label(g));
        if g.time.measured_ns() > 0 {
            hbar(&mut o, lw, y, bw, rh - 6.0, &segments(&g.time), &gpu_label(g));
        } else {
            text(&mut o, lw + 4.0, y + 14.0, "start", "no kernel records or NVML samples: not measured");
        }
    }
    o.push_str("</svg>");
    o
}

/// Per-GPU timelines: one row per GPU, a stacked column per time bucket.
fn chart_timelines(r: &Report) -> String {
    let rows: Vec<&GpuReport> = r.gpus.iter().take(MAX_ROWS).collect();
    let n = r.buckets.len().max(1);
    let (lw, bw, rh) = (230.0, 640.0, 30.0);
    let h = rows.len() as f64 * rh + 24.0;
    let cw = bw / n as f64;
    let mut o = String::new();
    svg_open(&mut o, lw + bw + 20.0, h, "Per-GPU timeline of the categories");
    for (i, g) in rows.iter().enumerate() {
        let y0 = 4.0 + i as f64 * rh;
        let hh = rh - 6.0;
        label(&mut o, lw - 8.0, y0 + 15.0, &gpu_label(g));
        let _ = write!(
            o,
            "<rect x=\"{lw}\" y=\"{y0:.1}\" width=\"{bw}\" height=\"{hh}\" fill=\"#fafafa\" stroke=\"#eee\"/>"
        );
        for (b, t) in g.timeline.iter().enumerate() {
            let Some(t) = t else { continue };
            if t.measured_ns() == 0 {
                continue;
            }
            let total: i64 = segments(t).iter().map(|s| s.1.max(0)).sum();
            let mut y = y0 + hh;
            let x = lw + b as f64 * cw;
            for (name, ns, col) in segments(t) {
                let hseg = hh * ns.max(0) as f64 / total.max(1) as f64;
                if hseg <= 0.0 {
                    continue;
                }
                y -= hseg;
                let _ = write!(
                    o,
                    "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{hseg:.2}\" fill=\"{col}\"><title>{} · bucket {b}: {name} {}</title></rect>",
                    cw.max(0.5),
                    esc(&gpu_label(g)),
                    fmt_duration(ns)
                );
            }
        }
    }
    let yb = h - 6.0;
    text(&mut o, lw, yb, "start", "0");
    text(&mut o, lw + bw, yb, "end", &fmt_duration(r.bucket_ns * n as i64));
    o.push_str("</svg>");
    o
}

/// A line chart of several series over the buckets, 0–100 %.
fn chart_lines(r: &Report, series: &[(&str, &str, bool, Vec<Option<f64>>)], title: &str) -> String {
    let (lw, bw, h) = (50.0, 820.0, 220.0);
    let n = r.buckets.len().max(1);
    let x = |i: usize| lw + bw * (i as f64 + 0.5) / n as f64;
    let ymax = series.iter().flat_map(|s| s.3.iter().flatten()).fold(1.0f64, |m, v| m.max(*v)).min(2.0);
    let y = |v: f64| 10.0 + (h - 40.0) * (1.0 - v / ymax);
    let mut o = String::new();
    svg_open(&mut o, lw + bw + 20.0, h, title);
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let _ =
            write!(o, "<line x1=\"{lw}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>", lw + bw, y(v), y(v));
        text(&mut o, lw - 6.0, y(v) + 4.0, "end", &format!("{:.0}%", v * 100.0));
    }
    for (name, col, dashed, vals) in series {
        let mut d = String::new();
        let mut pen = false;
        for (i, val) in vals.iter().enumerate() {
            match val {
                Some(v) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen { "L" } else { "M" }, x(i), y(*v));
                    pen = true;
                }
                None => pen = false,
            }
        }
        if !d.is_empty() {
            let dash = if *dashed { " stroke-dasharray=\"6 4\"" } else { "" };
            let _ = write!(
                o,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"{dash}><title>{}</title></path>",
                esc(name)
            );
            for (i, val) in vals.iter().enumerate() {
                if let Some(v) = val {
                    let _ = write!(
                        o,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{col}\"><title>{}: {:.1}% (bucket {i})</title></circle>",
                        x(i),
                        y(*v),
                        esc(name),
                        v * 100.0
                    );
                }
            }
        }
    }
    text(&mut o, lw, h - 8.0, "start", "0");
    text(&mut o, lw + bw, h - 8.0, "end", &fmt_duration(r.bucket_ns * n as i64));
    o.push_str("</svg>");
    o
}

fn idle_segments(t: &GpuTime) -> Vec<(&'static str, i64, &'static str)> {
    LEAVES.iter().filter(|l| l.group() == Group::Idle).map(|l| (l.label(), t.leaf(*l), l.colour())).collect()
}

fn chart_idle(r: &Report) -> String {
    let rows: Vec<&GpuReport> = r.gpus.iter().filter(|g| g.time.group(Group::Idle) > 0).take(MAX_ROWS).collect();
    let (lw, bw, rh) = (230.0, 560.0, 22.0);
    let h = rows.len() as f64 * rh + 10.0;
    let mut o = String::new();
    svg_open(&mut o, lw + bw + 90.0, h, "Idle time by class per GPU");
    let max_idle = rows.iter().map(|g| g.time.group(Group::Idle)).max().unwrap_or(1).max(1);
    for (i, g) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * rh;
        label(&mut o, lw - 8.0, y + 14.0, &gpu_label(g));
        let idle = g.time.group(Group::Idle);
        let w = bw * idle as f64 / max_idle as f64;
        hbar(&mut o, lw, y, w, rh - 6.0, &idle_segments(&g.time), &gpu_label(g));
        text(&mut o, lw + w + 4.0, y + 14.0, "start", &fmt_duration(idle));
    }
    o.push_str("</svg>");
    o
}

fn chart_top_kernels(r: &Report) -> String {
    let rows = &r.top_kernels;
    let (lw, bw, rh) = (380.0, 420.0, 20.0);
    let h = rows.len() as f64 * rh + 10.0;
    let max = rows.iter().map(|k| k.total_ns).max().unwrap_or(1).max(1);
    let mut o = String::new();
    svg_open(&mut o, lw + bw + 140.0, h, "Top kernels by time");
    for (i, k) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * rh;
        let short = shorten(&k.name, 58);
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\"><title>{}</title>{}</text>",
            lw - 8.0,
            y + 13.0,
            esc(&k.name),
            esc(&short)
        );
        let w = bw * k.total_ns as f64 / max as f64;
        let col = match k.category.as_str() {
            "communication" => C_COMM,
            "copy" => C_COPY,
            _ => C_COMPUTE,
        };
        let _ = C_STALL;
        let _ = write!(
            o,
            "<rect x=\"{lw}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{col}\"><title>{}: {} in {} calls</title></rect>",
            rh - 6.0,
            esc(&k.name),
            fmt_duration(k.total_ns),
            k.count
        );
        text(
            &mut o,
            lw + w + 4.0,
            y + 13.0,
            "start",
            &format!("{} ({:.1}%)", fmt_duration(k.total_ns), k.share * 100.0),
        );
    }
    o.push_str("</svg>");
    o
}

/// Rows are ranks (GPUs), columns time buckets, colour the sync-stall share.
fn chart_stall_heatmap(r: &Report) -> Option<String> {
    let rows: Vec<&GpuReport> = r.gpus.iter().filter(|g| g.time.int("comm_ns") > 0).take(128).collect();
    if rows.is_empty() {
        return None;
    }
    let n = r.buckets.len().max(1);
    let (lw, bw, rh) = (230.0, 640.0, 14.0);
    let h = rows.len() as f64 * rh + 30.0;
    let cw = bw / n as f64;
    let mut max = 0.0f64;
    for g in &rows {
        for t in g.timeline.iter().flatten() {
            if t.measured_ns() > 0 {
                max = max.max(t.leaf(Leaf::SyncStall) as f64 / t.measured_ns() as f64);
            }
        }
    }
    let max = if max > 0.0 { max } else { 1.0 };
    let mut o = String::new();
    svg_open(&mut o, lw + bw + 20.0, h, "Sync stall by rank over time");
    for (i, g) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * rh;
        label(&mut o, lw - 8.0, y + 11.0, &gpu_label(g));
        for (b, t) in g.timeline.iter().enumerate() {
            let Some(t) = t else { continue };
            if t.measured_ns() == 0 || t.int("comm_ns") == 0 {
                continue;
            }
            let st = t.leaf(Leaf::SyncStall);
            let share = st as f64 / t.measured_ns() as f64;
            let a = (share / max).clamp(0.0, 1.0);
            let _ = write!(
                o,
                "<rect x=\"{:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{C_STALL}\" fill-opacity=\"{:.3}\" stroke=\"#f5f5f5\" stroke-width=\"0.3\"><title>{} · bucket {b}: sync stall {} ({:.1}% of the time{})</title></rect>",
                lw + b as f64 * cw,
                cw.max(0.5),
                rh - 2.0,
                0.04 + 0.96 * a,
                esc(&gpu_label(g)),
                fmt_duration(st),
                share * 100.0,
                if t.int("sync_stall_estimated_ns") > 0 { ", partly estimated" } else { "" }
            );
        }
    }
    let darkest = if max * 100.0 >= 0.1 { format!("{:.1}%", max * 100.0) } else { format!("{:.2e}%", max * 100.0) };
    text(&mut o, lw, h - 8.0, "start", &format!("darkest = {darkest} of the bucket stalled"));
    o.push_str("</svg>");
    Some(o)
}

fn chart_steps(r: &Report) -> Option<String> {
    let series: Vec<_> = r.steps.iter().filter(|s| s.steps.len() >= 2).take(16).collect();
    if series.is_empty() {
        return None;
    }
    let (lw, bw, h) = (70.0, 800.0, 220.0);
    let max_n = series.iter().map(|s| s.steps.len()).max().unwrap_or(1).max(2);
    let max_d = series.iter().flat_map(|s| s.steps.iter().map(|x| x.2)).max().unwrap_or(1).max(1) as f64;
    let x = |i: usize| lw + bw * i as f64 / (max_n - 1) as f64;
    let y = |d: f64| 10.0 + (h - 40.0) * (1.0 - d / max_d);
    let palette = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457"];
    let mut o = String::new();
    svg_open(&mut o, lw + bw + 20.0, h, "Step times");
    for k in 0..=4 {
        let d = max_d * k as f64 / 4.0;
        let _ =
            write!(o, "<line x1=\"{lw}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>", lw + bw, y(d), y(d));
        text(&mut o, lw - 6.0, y(d) + 4.0, "end", &fmt_duration(d as i64));
    }
    for (si, s) in series.iter().enumerate() {
        let col = palette[si % palette.len()];
        let mut d = String::new();
        for (i, st) in s.steps.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1} ", if i == 0 { "M" } else { "L" }, x(i), y(st.2 as f64));
        }
        let label = format!("{} {} ({})", s.rank.map_or("rank ?".into(), |r| format!("rank {r}")), s.node, s.source);
        let _ = write!(
            o,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"1.5\"><title>{}</title></path>",
            esc(&label)
        );
        for (i, st) in s.steps.iter().enumerate() {
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{col}\"><title>{} step {}: {}</title></circle>",
                x(i),
                y(st.2 as f64),
                esc(&label),
                st.0.map_or("?".into(), |n| n.to_string()),
                fmt_duration(st.2)
            );
        }
    }
    text(&mut o, lw, h - 8.0, "start", "first step");
    text(&mut o, lw + bw, h - 8.0, "end", &format!("step {}", max_n));
    o.push_str("</svg>");
    Some(o)
}

fn tile(o: &mut String, label: &str, value: &str, note: &str) {
    let _ = write!(
        o,
        "<div class=\"tile\"><div class=\"v\">{}</div><div class=\"l\">{}</div><div class=\"n\">{}</div></div>",
        esc(value),
        esc(label),
        esc(note)
    );
}

/// Renders the report as one HTML page.
pub fn render(r: &Report) -> String {
    let t = &r.run;
    let mut o = String::with_capacity(256 * 1024);
    o.push_str(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>strand postmortem</title><style>",
    );
    o.push_str(
        "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#212121;margin:24px auto;max-width:1000px;padding:0 16px}\
         h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #e0e0e0;padding-bottom:4px}\
         .sub{color:#616161}.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}.tile{border:1px solid #e0e0e0;border-radius:6px;padding:8px 12px;min-width:140px}\
         .tile .v{font-size:20px;font-weight:600}.tile .l{color:#424242}.tile .n{color:#9e9e9e;font-size:12px}\
         svg.chart{display:block;margin:6px 0;font-size:11px;fill:#424242}svg.chart text{fill:#424242}\
         .legend span{margin-right:14px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}\
         table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:right}th{background:#fafafa}\
         td.l,th.l{text-align:left}.mono{font-family:ui-monospace,Menlo,monospace;font-size:12px}.note{color:#616161}.est{color:#ef6c00}\
         ol.findings li{margin:6px 0}li.critical b{color:#c62828}li.warning b{color:#ef6c00}li.info b{color:#1565c0}",
    );
    o.push_str("</style></head><body>");
    let _ = write!(
        o,
        "<h1>strand postmortem{}</h1><div class=\"sub\">{} GPU(s) · {} of run · windows of {} ({}) · launch-gap threshold {} · strand {}</div>",
        r.job.as_deref().map_or(String::new(), |j| format!(": job {}", esc(j))),
        r.gpus.len(),
        fmt_duration(r.end_ns - r.start_ns),
        fmt_duration(r.window_ns),
        r.windows_source,
        fmt_duration(r.launch_gap_ns),
        esc(&r.strand_version)
    );

    // What went wrong, in plain words, first.
    o.push_str("<h2>Findings</h2>");
    if r.findings.is_empty() {
        o.push_str("<p class=\"note\">No finding: no straggler, exposed communication, hollow busy, checkpoint or recovery cost above the thresholds of docs/findings.md in this run (or not enough data to judge them; see Notes).</p>");
    } else {
        o.push_str("<ol class=\"findings\">");
        for f in &r.findings {
            let query = f.evidence.get("query").and_then(|q| q.as_str()).unwrap_or("");
            let _ = write!(
                o,
                "<li class=\"{}\"><b>{} · {}</b> — {}<div class=\"mono note\">evidence: {}</div></li>",
                esc(&f.severity),
                esc(&f.severity),
                esc(&f.kind),
                esc(&f.summary),
                esc(query)
            );
        }
        o.push_str("</ol>");
    }

    // Headline tiles.
    o.push_str("<div class=\"tiles\">");
    tile(&mut o, "GPU time", &fmt_duration(t.powered_ns()), &format!("split by {}", t.split_source()));
    tile(&mut o, "compute", &pct(t.share(t.int("compute_ns"))), "|∪C|: union of compute kernels");
    tile(
        &mut o,
        "exposed communication",
        &pct(t.share(t.int("comm_exposed_ns"))),
        &format!("overlap ratio {}", pct(t.overlap_ratio())),
    );
    tile(&mut o, "idle", &pct(t.share(t.group(Group::Idle))), "no kernel, copy or set");
    match t.mfu() {
        Some(m) => tile(&mut o, "MFU", &pct(Some(m)), "model FLOP/s ÷ peak dense FLOP/s"),
        None => match t.tensor_estimate() {
            Some(e) => tile(&mut o, "tensor-pipe estimate", &pct(Some(e)), "ESTIMATE, not MFU (no model FLOPs)"),
            None => tile(&mut o, "MFU", "—", "no model FLOPs and no GPM data"),
        },
    }
    match t.reported_utilization() {
        Some(u) => tile(&mut o, "reported utilization", &pct(Some(u)), "NVML utilization.gpu"),
        None => tile(&mut o, "kernel busy", &pct(t.busy_ratio()), "|∪C∪M∪X| ÷ T (no NVML samples)"),
    }
    let note = if t.int("sync_stall_estimated_ns") > 0 {
        "sync stall (partly estimated) + hollow busy + wasted progress"
    } else {
        "sync stall + hollow busy + wasted progress"
    };
    tile(&mut o, "ghost compute", &fmt_duration(t.ghost_ns()), note);
    o.push_str("</div>");

    // 1. Where the time went.
    o.push_str("<h2>Where the GPU time went</h2>");
    let leg = leaf_legend(r, None);
    o.push_str(&legend(&leg));
    o.push_str(&chart_gpu_totals(r));
    o.push_str("<h2>Per-GPU timeline</h2><p class=\"note\">Each column is one time bucket; its height splits the bucket into the exclusive categories.</p>");
    o.push_str(&legend(&leg));
    o.push_str(&chart_timelines(r));
    // Kernel by kernel: the timeline export, linked when written beside the report.
    match &r.timeline {
        Some(t) => {
            let _ = write!(
                o,
                "<p class=\"note\">Kernel by kernel: <a href=\"{0}\">{0}</a> (every kernel per GPU and stream, collectives with their sync stall, these categories per window as counters, steps); open it in ui.perfetto.dev or chrome://tracing.</p>",
                esc(t)
            );
        }
        None => {
            let _ = write!(
                o,
                "<p class=\"note\">Kernel by kernel: <code>strand export trace {} -o trace.json</code> (or <code>strand postmortem --trace</code>) writes this run's timeline for ui.perfetto.dev or chrome://tracing.</p>",
                esc(&r.inputs.join(" "))
            );
        }
    }
    if r.gpus.len() > MAX_ROWS {
        let _ = write!(
            o,
            "<p class=\"note\">Showing {MAX_ROWS} of {} GPUs; report.json has all of them.</p>",
            r.gpus.len()
        );
    }
    o.push_str("<table><tr><th class=\"l\">GPU</th><th>compute</th><th>comm exposed</th><th>of which sync stall</th><th>memcpy exposed</th><th>idle</th><th>ghost</th><th>overlap ratio</th><th>MFU</th><th>reported</th></tr>");
    for g in &r.gpus {
        let gt = &g.time;
        let stall = if gt.int("comm_ns") == 0 {
            "—".to_string()
        } else {
            format!(
                "{}{}",
                fmt_duration(gt.leaf(Leaf::SyncStall)),
                if gt.int("sync_stall_estimated_ns") > 0 { " (est.)" } else { "" }
            )
        };
        let _ = write!(
            o,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&gpu_label(g)),
            pct(gt.share(gt.int("compute_ns"))),
            pct(gt.share(gt.int("comm_exposed_ns"))),
            stall,
            pct(gt.share(gt.int("memcpy_exposed_ns"))),
            pct(gt.share(gt.group(Group::Idle))),
            pct(gt.share(gt.ghost_ns())),
            pct(gt.overlap_ratio()),
            gt.mfu().map_or_else(
                || gt.tensor_estimate().map_or("—".into(), |e| format!("est. {}", pct(Some(e)))),
                |m| pct(Some(m))
            ),
            pct(gt.reported_utilization())
        );
    }
    o.push_str("</table>");

    // 2. MFU vs reported utilization.
    o.push_str("<h2>MFU against reported utilization</h2>");
    let mfu: Vec<Option<f64>> = r.buckets.iter().map(|b| b.mfu()).collect();
    let est: Vec<Option<f64>> = r.buckets.iter().map(|b| b.tensor_estimate()).collect();
    let rep: Vec<Option<f64>> = r.buckets.iter().map(|b| b.reported_utilization()).collect();
    let busy: Vec<Option<f64>> = r.buckets.iter().map(|b| b.busy_ratio()).collect();
    let sm: Vec<Option<f64>> = r.buckets.iter().map(|b| b.sm_active()).collect();
    let mut series: Vec<(&str, &str, bool, Vec<Option<f64>>)> = Vec::new();
    if mfu.iter().any(|x| x.is_some()) {
        series.push(("MFU", "#2e7d32", false, mfu));
    } else if est.iter().any(|x| x.is_some()) {
        series.push(("tensor-pipe estimate (ESTIMATE, not MFU)", "#2e7d32", true, est));
    }
    if rep.iter().any(|x| x.is_some()) {
        series.push(("reported utilization (NVML)", "#c62828", false, rep));
    }
    if sm.iter().any(|x| x.is_some()) {
        series.push(("SM active (GPM)", "#ef6c00", false, sm));
    }
    if busy.iter().any(|x| x.is_some()) {
        series.push(("kernel busy |∪C∪M∪X| ÷ T", "#1565c0", true, busy));
    }
    if series.iter().all(|s| s.0 != "MFU") {
        o.push_str("<p class=\"note est\">No model FLOPs in the input (step markers with <code>flops</code>, or <code>--flops-per-step</code>): MFU is not computed. Where GPM data exists the dashed green line is the tensor-pipe estimate — an estimate, not MFU.</p>");
    }
    let items: Vec<(&str, &str)> = series.iter().map(|s| (s.0, s.1)).collect();
    o.push_str(&legend(&items));
    o.push_str(&chart_lines(r, &series, "MFU against reported utilization over time"));

    // 3. Idle.
    o.push_str("<h2>Idle time breakdown</h2>");
    o.push_str(&legend(&leaf_legend(r, Some(Group::Idle))));
    o.push_str(&chart_idle(r));
    o.push_str("<p class=\"note\">GPU-level classes add up to idle. host_bound: the kernel ending the gap was launched after the GPU went idle; launch_gap: shorter gaps than the threshold; io_blocked: inside a checkpoint; no_process: no process held the GPU.</p>");
    o.push_str("<details><summary>Per-stream view (as Holistic Trace Analysis reports it)</summary><table><tr><th class=\"l\">GPU</th><th>stream</th><th>host wait</th><th>kernel wait</th><th>other</th><th>kernels</th></tr>");
    for g in &r.gpus {
        for s in &g.streams {
            let _ = write!(
                o,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&gpu_label(g)),
                s.stream,
                fmt_duration(s.host_wait_ns),
                fmt_duration(s.kernel_wait_ns),
                fmt_duration(s.other_ns),
                s.kernels
            );
        }
    }
    o.push_str("</table></details>");

    // 4. Top kernels.
    let _ = write!(
        o,
        "<h2>Top kernels by time</h2><p class=\"note\">{} distinct kernels, {} of kernel time in total (overlapping kernels counted each).</p>",
        r.distinct_kernels,
        fmt_duration(r.kernels_total_ns)
    );
    o.push_str(&chart_top_kernels(r));

    // 5. Sync stall heatmap.
    o.push_str("<h2>Sync stall by rank</h2>");
    match chart_stall_heatmap(r) {
        Some(svg) => {
            o.push_str("<p class=\"note\">Share of each time bucket a rank's communication kernels spent waiting for the last peer (exposed part). Estimated where not every rank of the communicator is in the input.</p>");
            o.push_str(&svg);
        }
        _ => o.push_str("<p class=\"note\">No sync-stall figures: the input has no NCCL call records with kernel times, or (with peers missing) no message sizes to estimate from.</p>"),
    }

    // 6. Steps.
    o.push_str("<h2>Step times</h2>");
    match chart_steps(r) {
        Some(svg) => {
            o.push_str(&svg);
            o.push_str("<table><tr><th class=\"l\">rank</th><th class=\"l\">node</th><th class=\"l\">source</th><th>steps</th><th>median step</th></tr>");
            for s in &r.steps {
                let _ = write!(
                    o,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
                    s.rank.map_or("?".into(), |r| r.to_string()),
                    esc(&s.node),
                    esc(&s.source),
                    s.steps.len(),
                    s.median_ns.map_or("—".into(), fmt_duration)
                );
            }
            o.push_str("</table>");
        }
        None => o.push_str("<p class=\"note\">Fewer than two steps per rank in the input (no markers, no profiler steps, no periodic NCCL calls).</p>"),
    }

    if !r.notes.is_empty() {
        o.push_str("<h2>Notes</h2><ul>");
        for n in &r.notes {
            let _ = write!(o, "<li>{}</li>", esc(n));
        }
        o.push_str("</ul>");
    }
    o.push_str("<p class=\"note\">Definitions: DESIGN §3–4 and docs/decomposition.md. Every figure is in report.json.</p></body></html>");
    o
}
