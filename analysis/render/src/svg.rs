//! Tiny inline-SVG charts for self-contained HTML (no script, no network),
//! as maud templates. Every SVG element is written with an end tag
//! (`rect … {}`): inside HTML, `<rect>` without one would swallow what follows.

use maud::{Markup, html};

/// Line colours, in series order.
const PALETTE: &[&str] = &["#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#6a1b9a", "#5d4037"];

/// Horizontal stacked bars: one row per label, one segment per category
/// (label, colour) — the colours every report gives that category.
pub fn stacked_bars(rows: &[(String, Vec<f64>)], categories: &[(&str, &str)], unit: &str) -> Markup {
    let width = 900.0;
    let label_w = 220.0;
    let bar_h = 22.0;
    let legend_h = 22.0 * categories.len().div_ceil(4) as f64;
    let height = legend_h + rows.len() as f64 * (bar_h + 6.0) + 10.0;
    let max = rows.iter().map(|(_, v)| v.iter().sum::<f64>()).fold(0.0, f64::max).max(1e-12);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) font-family="sans-serif" font-size="12" {
            @for (i, (c, colour)) in categories.iter().enumerate() {
                @let (x, y) = (10.0 + (i % 4) as f64 * 220.0, 4.0 + (i / 4) as f64 * 22.0);
                rect x=(x) y=(y) width="12" height="12" fill=(colour) stroke="grey" stroke-width="0.5" {}
                text x=(x + 16.0) y=(y + 11.0) { (c) }
            }
            @for (r, (label, values)) in rows.iter().enumerate() {
                @let y = legend_h + 6.0 + r as f64 * (bar_h + 6.0);
                @let (segments, end) = layout(values, label_w, max, width - label_w - 90.0);
                text x="0" y=(y + 15.0) { (label) }
                @for (i, x, w, v) in segments {
                    @let (name, colour) = categories.get(i).copied().unwrap_or(("?", "#999999"));
                    rect x=(format!("{x:.1}")) y=(y) width=(format!("{w:.1}")) height=(bar_h) fill=(colour) {
                        title { (name) ": " (format!("{v:.2}")) " " (unit) }
                    }
                }
                text x=(format!("{:.1}", end + 4.0)) y=(y + 15.0) { (format!("{:.1}", values.iter().sum::<f64>())) " " (unit) }
            }
        }
    }
}

/// The drawn segments of one stacked bar from `x0`, `values` scaled so
/// that `max` spans `span`: (category, x, width, value), and where it ends.
fn layout(values: &[f64], x0: f64, max: f64, span: f64) -> (Vec<(usize, f64, f64, f64)>, f64) {
    let mut x = x0;
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let w = v / max * span;
        if w > 0.0 {
            out.push((i, x, w, *v));
        }
        x += w;
    }
    (out, x)
}

/// Lines over a shared x axis (time buckets), y from 0.
pub fn lines(x_labels: &[String], series: &[(&str, Vec<f64>)], unit: &str) -> Markup {
    let (width, height, left, bottom) = (900.0, 260.0, 60.0, 40.0);
    let n = x_labels.len().max(2);
    let max = series.iter().flat_map(|s| s.1.iter().copied()).fold(0.0, f64::max).max(1e-12);
    let px = |i: usize| left + i as f64 * (width - left - 20.0) / (n - 1) as f64;
    let py = |v: f64| (height - bottom) - v / max * (height - bottom - 30.0);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) font-family="sans-serif" font-size="11" {
            line x1=(left) y1=(height - bottom) x2=(width - 20.0) y2=(height - bottom) stroke="grey" {}
            line x1=(left) y1="20" x2=(left) y2=(height - bottom) stroke="grey" {}
            text x="2" y=(py(max) + 4.0) { (format!("{max:.1}")) }
            text x="2" y=(height - bottom) { "0 " (unit) }
            @for (i, l) in x_labels.iter().enumerate() {
                @if x_labels.len() <= 8 || i % x_labels.len().div_ceil(8) == 0 {
                    text x=(format!("{:.1}", px(i))) y=(height - bottom + 16.0) text-anchor="middle" { (l) }
                }
            }
            @for (k, (name, v)) in series.iter().enumerate() {
                @let color = PALETTE[k % PALETTE.len()];
                @let points = v.iter().enumerate().map(|(i, y)| format!("{:.1},{:.1}", px(i), py(*y))).collect::<Vec<_>>().join(" ");
                polyline fill="none" stroke=(color) stroke-width="2" points=(points) {}
                rect x=(left + k as f64 * 200.0) y="4" width="12" height="12" fill=(color) {}
                text x=(left + 16.0 + k as f64 * 200.0) y="14" { (name) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_every_element_is_closed() {
        let rows = vec![("<script>\"&".to_string(), vec![1.0, 2.0])];
        let s = stacked_bars(&rows, &[("a<b", "#000"), ("c", "#fff")], "GPU-h").into_string();
        assert!(!s.contains("<script>") && s.contains("&lt;script&gt;&quot;&amp;") && s.contains("a&lt;b"), "{s}");
        assert_eq!(s.matches("<rect").count(), s.matches("</rect>").count());
        assert!(s.contains(r##"<rect x="220.0" y="28" width="196.7" height="22" fill="#000">"##), "{s}");
        let l = lines(&["a&b".into(), "c".into()], &[("x\"y", vec![0.0, 1.0])], "u").into_string();
        assert!(l.contains("a&amp;b") && l.contains("x&quot;y") && l.contains("text-anchor=\"middle\""), "{l}");
        assert!(l.contains(r#"points="60.0,220.0 880.0,30.0""#), "{l}");
    }
}
