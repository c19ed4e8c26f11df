//! Tiny inline-SVG charts for self-contained HTML (no script, no network).

use crate::esc;

/// Line colours, in series order.
const PALETTE: &[&str] = &["#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#6a1b9a", "#5d4037"];

/// Horizontal stacked bars: one row per label, one segment per category
/// (label, colour) — the colours every report gives that category.
pub fn stacked_bars(rows: &[(String, Vec<f64>)], categories: &[(&str, &str)], unit: &str) -> String {
    let width = 900.0;
    let label_w = 220.0;
    let bar_h = 22.0;
    let legend_h = 22.0 * categories.len().div_ceil(4) as f64;
    let height = legend_h + rows.len() as f64 * (bar_h + 6.0) + 10.0;
    let max = rows.iter().map(|(_, v)| v.iter().sum::<f64>()).fold(0.0, f64::max).max(1e-12);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    for (i, (c, colour)) in categories.iter().enumerate() {
        let (x, y) = (10.0 + (i % 4) as f64 * 220.0, 4.0 + (i / 4) as f64 * 22.0);
        s += &format!(
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}" stroke="grey" stroke-width="0.5"/><text x="{}" y="{}">{}</text>"#,
            x + 16.0,
            y + 11.0,
            esc(c)
        );
    }
    for (r, (label, values)) in rows.iter().enumerate() {
        let y = legend_h + 6.0 + r as f64 * (bar_h + 6.0);
        s += &format!(r#"<text x="0" y="{}">{}</text>"#, y + 15.0, esc(label));
        let mut x = label_w;
        for (i, v) in values.iter().enumerate() {
            let w = v / max * (width - label_w - 90.0);
            if w > 0.0 {
                let (name, colour) = categories.get(i).copied().unwrap_or(("?", "#999999"));
                s += &format!(
                    r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{bar_h}" fill="{colour}"><title>{}: {v:.2} {unit}</title></rect>"#,
                    esc(name)
                );
            }
            x += w;
        }
        s += &format!(r#"<text x="{:.1}" y="{}">{:.1} {unit}</text>"#, x + 4.0, y + 15.0, values.iter().sum::<f64>());
    }
    s + "</svg>"
}

/// Lines over a shared x axis (time buckets), y from 0.
pub fn lines(x_labels: &[String], series: &[(&str, Vec<f64>)], unit: &str) -> String {
    let (width, height, left, bottom) = (900.0, 260.0, 60.0, 40.0);
    let n = x_labels.len().max(2);
    let max = series.iter().flat_map(|s| s.1.iter().copied()).fold(0.0, f64::max).max(1e-12);
    let px = |i: usize| left + i as f64 * (width - left - 20.0) / (n - 1) as f64;
    let py = |v: f64| (height - bottom) - v / max * (height - bottom - 30.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    s += &format!(
        r#"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="grey"/><line x1="{left}" y1="20" x2="{left}" y2="{0}" stroke="grey"/>"#,
        height - bottom,
        width - 20.0
    );
    s += &format!(
        r#"<text x="2" y="{}">{max:.1}</text><text x="2" y="{}">0 {unit}</text>"#,
        py(max) + 4.0,
        height - bottom
    );
    for (i, l) in x_labels.iter().enumerate() {
        if x_labels.len() <= 8 || i % x_labels.len().div_ceil(8) == 0 {
            s += &format!(
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                px(i),
                height - bottom + 16.0,
                esc(l)
            );
        }
    }
    for (k, (name, v)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let pts: Vec<String> = v.iter().enumerate().map(|(i, y)| format!("{:.1},{:.1}", px(i), py(*y))).collect();
        s += &format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        s += &format!(
            r#"<rect x="{}" y="4" width="12" height="12" fill="{color}"/><text x="{}" y="14">{}</text>"#,
            left + k as f64 * 200.0,
            left + 16.0 + k as f64 * 200.0,
            esc(name)
        );
    }
    s + "</svg>"
}
