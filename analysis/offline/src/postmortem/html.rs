//! `report.html`: one self-contained page (inline CSS and SVG, no script,
//! no network). It renders [`Report`] and computes nothing of its own.
//! The page is a maud template (see strand-render for why): every value is
//! escaped as it is spliced in; the only unescaped text is [`CSS`]. SVG
//! elements are written with end tags (`rect … {}`), as HTML needs them.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use strand_analysis::GpuTime;
use strand_analysis::accounting::{Group, LEAVES, Leaf};
pub use strand_render::{fmt_duration, pct};

use super::report::{GpuReport, Report};

const C_STALL: &str = "#c62828";
const C_COMM: &str = "#5c6bc0";
const C_COPY: &str = "#f9a825";
const C_COMPUTE: &str = "#2e7d32";
/// Per-GPU charts show at most this many GPUs.
const MAX_ROWS: usize = 64;

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#212121;margin:24px auto;max-width:1000px;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #e0e0e0;padding-bottom:4px}\
.sub{color:#616161}.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}.tile{border:1px solid #e0e0e0;border-radius:6px;padding:8px 12px;min-width:140px}\
.tile .v{font-size:20px;font-weight:600}.tile .l{color:#424242}.tile .n{color:#9e9e9e;font-size:12px}\
svg.chart{display:block;margin:6px 0;font-size:11px;fill:#424242}svg.chart text{fill:#424242}\
.legend span{margin-right:14px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}\
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:right}th{background:#fafafa}\
td.l,th.l{text-align:left}.mono{font-family:ui-monospace,Menlo,monospace;font-size:12px}.note{color:#616161}.est{color:#ef6c00}\
ol.findings li{margin:6px 0}li.critical b{color:#c62828}li.warning b{color:#ef6c00}li.info b{color:#1565c0}";

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

/// Coordinates as the charts write them: one or two decimals.
fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

/// A row label cut to `n` characters, right-aligned at `x`; the full text is its tooltip.
fn label(x: f64, y: f64, s: &str, n: usize) -> Markup {
    html! {
        text x=(f1(x)) y=(f1(y)) text-anchor="end" { title { (s) } (shorten(s, n)) }
    }
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

fn legend(items: &[(&str, &str)]) -> Markup {
    html! {
        div.legend {
            @for (name, col) in items {
                span { i style={ "background:" (col) } {} (name) }
            }
        }
    }
}

/// One horizontal stacked bar of `segs` scaled to `width`.
fn hbar(x: f64, y: f64, width: f64, h: f64, segs: &[(&str, i64, &str)], label: &str) -> Markup {
    let total: i64 = segs.iter().map(|s| s.1.max(0)).sum();
    let mut bars = Vec::with_capacity(segs.len());
    let mut cx = x;
    for &(name, ns, col) in segs {
        let w = if total > 0 { width * ns.max(0) as f64 / total as f64 } else { 0.0 };
        if w > 0.0 {
            bars.push((cx, w, name, ns, col));
        }
        cx += w;
    }
    html! {
        @for (cx, w, name, ns, col) in bars {
            rect x=(f2(cx)) y=(f2(y)) width=(f2(w)) height=(f2(h)) fill=(col) {
                title { (format!("{label}: {name} — {} ({:.1}%)", fmt_duration(ns), 100.0 * ns as f64 / total as f64)) }
            }
        }
    }
}

/// A chart: an inline `<svg>` of `w` × `h` around `body`, titled for screen readers.
fn chart(w: f64, h: f64, title: &str, body: Markup) -> Markup {
    html! {
        svg.chart width=(format!("{w:.0}")) height=(format!("{h:.0}")) viewBox=(format!("0 0 {w:.0} {h:.0}"))
            role="img" aria-label=(title) { (body) }
    }
}

fn text(x: f64, y: f64, anchor: &str, s: &str) -> Markup {
    html! {
        text x=(f1(x)) y=(f1(y)) text-anchor=(anchor) { (s) }
    }
}

/// Horizontal grid lines from `x1` to `x2` at `ys`, each labelled at its left.
fn grid(x1: f64, x2: f64, lines: &[(f64, String)]) -> Markup {
    html! {
        @for (y, l) in lines {
            line x1=(x1) x2=(x2) y1=(f1(*y)) y2=(f1(*y)) stroke="#eee" {}
            (text(x1 - 6.0, y + 4.0, "end", l))
        }
    }
}

/// Run-level stacked bars, one per GPU.
fn chart_gpu_totals(r: &Report) -> Markup {
    let rows: Vec<&GpuReport> = r.gpus.iter().take(MAX_ROWS).collect();
    let (lw, bw, rh) = (230.0, 640.0, 22.0);
    let h = rows.len() as f64 * rh + 10.0;
    let body = html! {
        @for (i, g) in rows.iter().enumerate() {
            @let y = 5.0 + i as f64 * rh;
            @let name = gpu_label(g);
            (label(lw - 8.0, y + 14.0, &name, 32))
            @if g.time.measured_ns() > 0 {
                (hbar(lw, y, bw, rh - 6.0, &segments(&g.time), &name))
            } @else {
                (text(lw + 4.0, y + 14.0, "start", "no kernel records or NVML samples: not measured"))
            }
        }
    };
    chart(lw + bw + 20.0, h, "GPU time by category per GPU", body)
}

/// One bucket's column of a timeline row: the segments stacked upwards
/// from `bottom`, `hh` high in all: (y, height, label, ns, colour).
fn column(t: &GpuTime, bottom: f64, hh: f64) -> Vec<(f64, f64, &'static str, i64, &'static str)> {
    let segs = segments(t);
    let total: i64 = segs.iter().map(|s| s.1.max(0)).sum();
    let mut y = bottom;
    let mut out = Vec::with_capacity(segs.len());
    for (name, ns, col) in segs {
        let hseg = hh * ns.max(0) as f64 / total.max(1) as f64;
        if hseg > 0.0 {
            y -= hseg;
            out.push((y, hseg, name, ns, col));
        }
    }
    out
}

/// Per-GPU timelines: one row per GPU, a stacked column per time bucket.
fn chart_timelines(r: &Report) -> Markup {
    let rows: Vec<&GpuReport> = r.gpus.iter().take(MAX_ROWS).collect();
    let n = r.buckets.len().max(1);
    let (lw, bw, rh) = (230.0, 640.0, 30.0);
    let h = rows.len() as f64 * rh + 24.0;
    let cw = bw / n as f64;
    let body = html! {
        @for (i, g) in rows.iter().enumerate() {
            @let y0 = 4.0 + i as f64 * rh;
            @let hh = rh - 6.0;
            @let name = gpu_label(g);
            (label(lw - 8.0, y0 + 15.0, &name, 32))
            rect x=(lw) y=(f1(y0)) width=(bw) height=(hh) fill="#fafafa" stroke="#eee" {}
            @for (b, t) in g.timeline.iter().enumerate() {
                @if let Some(t) = t.as_ref().filter(|t| t.measured_ns() > 0) {
                    @let x = lw + b as f64 * cw;
                    @for (y, hseg, seg, ns, col) in column(t, y0 + hh, hh) {
                        rect x=(f2(x)) y=(f2(y)) width=(f2(cw.max(0.5))) height=(f2(hseg)) fill=(col) {
                            title { (format!("{name} · bucket {b}: {seg} {}", fmt_duration(ns))) }
                        }
                    }
                }
            }
        }
        (text(lw, h - 6.0, "start", "0"))
        (text(lw + bw, h - 6.0, "end", &fmt_duration(r.bucket_ns * n as i64)))
    };
    chart(lw + bw + 20.0, h, "Per-GPU timeline of the categories", body)
}

/// SVG path data through the points, lifting the pen over `None`.
fn path_data(points: impl Iterator<Item = Option<(f64, f64)>>) -> String {
    let mut d = String::new();
    let mut pen = false;
    for p in points {
        match p {
            Some((x, y)) => {
                d += &format!("{}{x:.1},{y:.1} ", if pen { "L" } else { "M" });
                pen = true;
            }
            None => pen = false,
        }
    }
    d
}

/// A line chart of several series over the buckets, 0–100 %.
fn chart_lines(r: &Report, series: &[(&str, &str, bool, Vec<Option<f64>>)], title: &str) -> Markup {
    let (lw, bw, h) = (50.0, 820.0, 220.0);
    let n = r.buckets.len().max(1);
    let x = |i: usize| lw + bw * (i as f64 + 0.5) / n as f64;
    let ymax = series.iter().flat_map(|s| s.3.iter().flatten()).fold(1.0f64, |m, v| m.max(*v)).min(2.0);
    let y = |v: f64| 10.0 + (h - 40.0) * (1.0 - v / ymax);
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|k| {
            let v = ymax * k as f64 / 4.0;
            (y(v), format!("{:.0}%", v * 100.0))
        })
        .collect();
    let body = html! {
        (grid(lw, lw + bw, &ticks))
        @for (name, col, dashed, vals) in series {
            @let d = path_data(vals.iter().enumerate().map(|(i, v)| v.map(|v| (x(i), y(v)))));
            @if !d.is_empty() {
                path d=(d) fill="none" stroke=(col) stroke-width="2" stroke-dasharray=[dashed.then_some("6 4")] {
                    title { (name) }
                }
                @for (i, v) in vals.iter().enumerate() {
                    @if let Some(v) = v {
                        circle cx=(f1(x(i))) cy=(f1(y(*v))) r="2" fill=(col) {
                            title { (format!("{name}: {:.1}% (bucket {i})", v * 100.0)) }
                        }
                    }
                }
            }
        }
        (text(lw, h - 8.0, "start", "0"))
        (text(lw + bw, h - 8.0, "end", &fmt_duration(r.bucket_ns * n as i64)))
    };
    chart(lw + bw + 20.0, h, title, body)
}

fn idle_segments(t: &GpuTime) -> Vec<(&'static str, i64, &'static str)> {
    LEAVES.iter().filter(|l| l.group() == Group::Idle).map(|l| (l.label(), t.leaf(*l), l.colour())).collect()
}

fn chart_idle(r: &Report) -> Markup {
    let rows: Vec<&GpuReport> = r.gpus.iter().filter(|g| g.time.group(Group::Idle) > 0).take(MAX_ROWS).collect();
    let (lw, bw, rh) = (230.0, 560.0, 22.0);
    let h = rows.len() as f64 * rh + 10.0;
    let max_idle = rows.iter().map(|g| g.time.group(Group::Idle)).max().unwrap_or(1).max(1);
    let body = html! {
        @for (i, g) in rows.iter().enumerate() {
            @let y = 5.0 + i as f64 * rh;
            @let name = gpu_label(g);
            @let idle = g.time.group(Group::Idle);
            @let w = bw * idle as f64 / max_idle as f64;
            (label(lw - 8.0, y + 14.0, &name, 32))
            (hbar(lw, y, w, rh - 6.0, &idle_segments(&g.time), &name))
            (text(lw + w + 4.0, y + 14.0, "start", &fmt_duration(idle)))
        }
    };
    chart(lw + bw + 90.0, h, "Idle time by class per GPU", body)
}

fn chart_top_kernels(r: &Report) -> Markup {
    let rows = &r.top_kernels;
    let (lw, bw, rh) = (380.0, 420.0, 20.0);
    let h = rows.len() as f64 * rh + 10.0;
    let max = rows.iter().map(|k| k.total_ns).max().unwrap_or(1).max(1);
    let body = html! {
        @for (i, k) in rows.iter().enumerate() {
            @let y = 5.0 + i as f64 * rh;
            @let w = bw * k.total_ns as f64 / max as f64;
            @let col = match k.category.as_str() {
                "communication" => C_COMM,
                "copy" => C_COPY,
                _ => C_COMPUTE,
            };
            (label(lw - 8.0, y + 13.0, &k.name, 58))
            rect x=(lw) y=(f1(y)) width=(f2(w)) height=(f1(rh - 6.0)) fill=(col) {
                title { (format!("{}: {} in {} calls", k.name, fmt_duration(k.total_ns), k.count)) }
            }
            (text(lw + w + 4.0, y + 13.0, "start", &format!("{} ({:.1}%)", fmt_duration(k.total_ns), k.share * 100.0)))
        }
    };
    chart(lw + bw + 140.0, h, "Top kernels by time", body)
}

/// Rows are ranks (GPUs), columns time buckets, colour the sync-stall share.
fn chart_stall_heatmap(r: &Report) -> Option<Markup> {
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
    let darkest = if max * 100.0 >= 0.1 { format!("{:.1}%", max * 100.0) } else { format!("{:.2e}%", max * 100.0) };
    let body = html! {
        @for (i, g) in rows.iter().enumerate() {
            @let y = 4.0 + i as f64 * rh;
            @let name = gpu_label(g);
            (label(lw - 8.0, y + 11.0, &name, 32))
            @for (b, t) in g.timeline.iter().enumerate() {
                @if let Some(t) = t.as_ref().filter(|t| t.measured_ns() > 0 && t.int("comm_ns") > 0) {
                    @let st = t.leaf(Leaf::SyncStall);
                    @let share = st as f64 / t.measured_ns() as f64;
                    @let a = (share / max).clamp(0.0, 1.0);
                    @let est = if t.int("sync_stall_estimated_ns") > 0 { ", partly estimated" } else { "" };
                    rect x=(f2(lw + b as f64 * cw)) y=(f1(y)) width=(f2(cw.max(0.5))) height=(f1(rh - 2.0)) fill=(C_STALL)
                        fill-opacity=(format!("{:.3}", 0.04 + 0.96 * a)) stroke="#f5f5f5" stroke-width="0.3" {
                        title {
                            (format!("{name} · bucket {b}: sync stall {} ({:.1}% of the time{est})", fmt_duration(st), share * 100.0))
                        }
                    }
                }
            }
        }
        (text(lw, h - 8.0, "start", &format!("darkest = {darkest} of the bucket stalled")))
    };
    Some(chart(lw + bw + 20.0, h, "Sync stall by rank over time", body))
}

fn chart_steps(r: &Report) -> Option<Markup> {
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
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|k| {
            let d = max_d * k as f64 / 4.0;
            (y(d), fmt_duration(d as i64))
        })
        .collect();
    let body = html! {
        (grid(lw, lw + bw, &ticks))
        @for (si, s) in series.iter().enumerate() {
            @let col = palette[si % palette.len()];
            @let d = path_data(s.steps.iter().enumerate().map(|(i, st)| Some((x(i), y(st.2 as f64)))));
            @let name = format!("{} {} ({})", s.rank.map_or("rank ?".into(), |r| format!("rank {r}")), s.node, s.source);
            path d=(d) fill="none" stroke=(col) stroke-width="1.5" { title { (name) } }
            @for (i, st) in s.steps.iter().enumerate() {
                circle cx=(f1(x(i))) cy=(f1(y(st.2 as f64))) r="2.5" fill=(col) {
                    title {
                        (format!("{name} step {}: {}", st.0.map_or("?".into(), |n| n.to_string()), fmt_duration(st.2)))
                    }
                }
            }
        }
        (text(lw, h - 8.0, "start", "first step"))
        (text(lw + bw, h - 8.0, "end", &format!("step {max_n}")))
    };
    Some(chart(lw + bw + 20.0, h, "Step times", body))
}

fn tile(label: &str, value: &str, note: &str) -> Markup {
    html! {
        div.tile { div.v { (value) } div.l { (label) } div.n { (note) } }
    }
}

/// The headline tiles.
fn tiles(r: &Report) -> Markup {
    let t = &r.run;
    let mfu = match (t.mfu(), t.tensor_estimate()) {
        (Some(m), _) => tile("MFU", &pct(Some(m)), "model FLOP/s ÷ peak dense FLOP/s"),
        (None, Some(e)) => tile("tensor-pipe estimate", &pct(Some(e)), "ESTIMATE, not MFU (no model FLOPs)"),
        (None, None) => tile("MFU", "—", "no model FLOPs and no GPM data"),
    };
    let reported = match t.reported_utilization() {
        Some(u) => tile("reported utilization", &pct(Some(u)), "NVML utilization.gpu"),
        None => tile("kernel busy", &pct(t.busy_ratio()), "|∪C∪M∪X| ÷ T (no NVML samples)"),
    };
    let ghost_note = if t.int("sync_stall_estimated_ns") > 0 {
        "sync stall (partly estimated) + hollow busy + wasted progress"
    } else {
        "sync stall + hollow busy + wasted progress"
    };
    html! {
        div.tiles {
            (tile("GPU time", &fmt_duration(t.powered_ns()), &format!("split by {}", t.split_source())))
            (tile("compute", &pct(t.share(t.int("compute_ns"))), "|∪C|: union of compute kernels"))
            (tile(
                "exposed communication",
                &pct(t.share(t.int("comm_exposed_ns"))),
                &format!("overlap ratio {}", pct(t.overlap_ratio())),
            ))
            (tile("idle", &pct(t.share(t.group(Group::Idle))), "no kernel, copy or set"))
            (mfu)
            (reported)
            (tile("ghost compute", &fmt_duration(t.ghost_ns()), ghost_note))
        }
    }
}

/// The per-GPU table under the timeline.
fn gpu_table(r: &Report) -> Markup {
    html! {
        table {
            tr {
                th.l { "GPU" }
                @for h in ["compute", "comm exposed", "of which sync stall", "memcpy exposed", "idle", "ghost",
                           "overlap ratio", "MFU", "reported"] {
                    th { (h) }
                }
            }
            @for g in &r.gpus {
                @let gt = &g.time;
                @let stall = if gt.int("comm_ns") == 0 {
                    "—".to_string()
                } else {
                    format!(
                        "{}{}",
                        fmt_duration(gt.leaf(Leaf::SyncStall)),
                        if gt.int("sync_stall_estimated_ns") > 0 { " (est.)" } else { "" }
                    )
                };
                @let mfu = gt.mfu().map_or_else(
                    || gt.tensor_estimate().map_or("—".into(), |e| format!("est. {}", pct(Some(e)))),
                    |m| pct(Some(m)),
                );
                tr {
                    td.l { (gpu_label(g)) }
                    td { (pct(gt.share(gt.int("compute_ns")))) }
                    td { (pct(gt.share(gt.int("comm_exposed_ns")))) }
                    td { (stall) }
                    td { (pct(gt.share(gt.int("memcpy_exposed_ns")))) }
                    td { (pct(gt.share(gt.group(Group::Idle)))) }
                    td { (pct(gt.share(gt.ghost_ns()))) }
                    td { (pct(gt.overlap_ratio())) }
                    td { (mfu) }
                    td { (pct(gt.reported_utilization())) }
                }
            }
        }
    }
}

/// The series of the MFU chart, those the run has: (name, colour, dashed, per bucket).
fn mfu_series(r: &Report) -> Vec<(&'static str, &'static str, bool, Vec<Option<f64>>)> {
    let mfu: Vec<Option<f64>> = r.buckets.iter().map(|b| b.mfu()).collect();
    let est: Vec<Option<f64>> = r.buckets.iter().map(|b| b.tensor_estimate()).collect();
    let rep: Vec<Option<f64>> = r.buckets.iter().map(|b| b.reported_utilization()).collect();
    let busy: Vec<Option<f64>> = r.buckets.iter().map(|b| b.busy_ratio()).collect();
    let sm: Vec<Option<f64>> = r.buckets.iter().map(|b| b.sm_active()).collect();
    let mut series = Vec::new();
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
    series
}

/// Renders the report as one HTML page.
pub fn render(r: &Report) -> String {
    let leg = leaf_legend(r, None);
    let series = mfu_series(r);
    let series_legend: Vec<(&str, &str)> = series.iter().map(|s| (s.0, s.1)).collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "strand postmortem" }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "strand postmortem" @if let Some(j) = &r.job { ": job " (j) } }
                div.sub {
                    (r.gpus.len()) " GPU(s) · " (fmt_duration(r.end_ns - r.start_ns)) " of run · windows of "
                    (fmt_duration(r.window_ns)) " (" (r.windows_source) ") · launch-gap threshold "
                    (fmt_duration(r.launch_gap_ns)) " · strand " (r.strand_version)
                }

                // What went wrong, in plain words, first.
                h2 { "Findings" }
                @if r.findings.is_empty() {
                    p.note {
                        "No finding: no straggler, exposed communication, hollow busy, checkpoint or recovery cost above the thresholds of docs/findings.md in this run (or not enough data to judge them; see Notes)."
                    }
                } @else {
                    ol.findings {
                        @for f in &r.findings {
                            li class=(f.severity) {
                                b { (f.severity) " · " (f.kind) } " — " (f.summary)
                                div.mono.note { "evidence: " (f.evidence.get("query").and_then(|q| q.as_str()).unwrap_or("")) }
                            }
                        }
                    }
                }

                (tiles(r))

                // 1. Where the time went.
                h2 { "Where the GPU time went" }
                (legend(&leg))
                (chart_gpu_totals(r))
                h2 { "Per-GPU timeline" }
                p.note { "Each column is one time bucket; its height splits the bucket into the exclusive categories." }
                (legend(&leg))
                (chart_timelines(r))
                // Kernel by kernel: the timeline export, linked when written beside the report.
                @match &r.timeline {
                    Some(t) => p.note {
                        "Kernel by kernel: " a href=(t) { (t) }
                        " (every kernel per GPU and stream, collectives with their sync stall, these categories per window as counters, steps); open it in ui.perfetto.dev or chrome://tracing."
                    },
                    None => p.note {
                        "Kernel by kernel: " code { "strand export trace " (r.inputs.join(" ")) " -o trace.json" }
                        " (or " code { "strand postmortem --trace" } ") writes this run's timeline for ui.perfetto.dev or chrome://tracing."
                    },
                }
                @if r.gpus.len() > MAX_ROWS {
                    p.note { "Showing " (MAX_ROWS) " of " (r.gpus.len()) " GPUs; report.json has all of them." }
                }
                (gpu_table(r))

                // 2. MFU vs reported utilization.
                h2 { "MFU against reported utilization" }
                @if series.iter().all(|s| s.0 != "MFU") {
                    p.note.est {
                        "No model FLOPs in the input (step markers with " code { "flops" } ", or " code { "--flops-per-step" }
                        "): MFU is not computed. Where GPM data exists the dashed green line is the tensor-pipe estimate — an estimate, not MFU."
                    }
                }
                (legend(&series_legend))
                (chart_lines(r, &series, "MFU against reported utilization over time"))

                // 3. Idle.
                h2 { "Idle time breakdown" }
                (legend(&leaf_legend(r, Some(Group::Idle))))
                (chart_idle(r))
                p.note {
                    "GPU-level classes add up to idle. host_bound: the kernel ending the gap was launched after the GPU went idle; launch_gap: shorter gaps than the threshold; io_blocked: inside a checkpoint; no_process: no process held the GPU."
                }
                details {
                    summary { "Per-stream view (as Holistic Trace Analysis reports it)" }
                    table {
                        tr {
                            th.l { "GPU" } th { "stream" } th { "host wait" } th { "kernel wait" } th { "other" } th { "kernels" }
                        }
                        @for g in &r.gpus {
                            @for s in &g.streams {
                                tr {
                                    td.l { (gpu_label(g)) }
                                    td { (s.stream) }
                                    td { (fmt_duration(s.host_wait_ns)) }
                                    td { (fmt_duration(s.kernel_wait_ns)) }
                                    td { (fmt_duration(s.other_ns)) }
                                    td { (s.kernels) }
                                }
                            }
                        }
                    }
                }

                // 4. Top kernels.
                h2 { "Top kernels by time" }
                p.note {
                    (r.distinct_kernels) " distinct kernels, " (fmt_duration(r.kernels_total_ns))
                    " of kernel time in total (overlapping kernels counted each)."
                }
                (chart_top_kernels(r))

                // 5. Sync stall heatmap.
                h2 { "Sync stall by rank" }
                @if let Some(svg) = chart_stall_heatmap(r) {
                    p.note {
                        "Share of each time bucket a rank's communication kernels spent waiting for the last peer (exposed part). Estimated where not every rank of the communicator is in the input."
                    }
                    (svg)
                } @else {
                    p.note {
                        "No sync-stall figures: the input has no NCCL call records with kernel times, or (with peers missing) no message sizes to estimate from."
                    }
                }

                // 6. Steps.
                h2 { "Step times" }
                @if let Some(svg) = chart_steps(r) {
                    (svg)
                    table {
                        tr { th.l { "rank" } th.l { "node" } th.l { "source" } th { "steps" } th { "median step" } }
                        @for s in &r.steps {
                            tr {
                                td.l { (s.rank.map_or("?".into(), |r| r.to_string())) }
                                td.l { (s.node) }
                                td.l { (s.source) }
                                td { (s.steps.len()) }
                                td { (s.median_ns.map_or("—".into(), fmt_duration)) }
                            }
                        }
                    }
                } @else {
                    p.note {
                        "Fewer than two steps per rank in the input (no markers, no profiler steps, no periodic NCCL calls)."
                    }
                }

                @if !r.notes.is_empty() {
                    h2 { "Notes" }
                    ul { @for n in &r.notes { li { (n) } } }
                }
                p.note { "Definitions: DESIGN §3–4 and docs/decomposition.md. Every figure is in report.json." }
            }
        }
    };
    page.into_string()
}
