//! strand-render: what `strand postmortem`'s and `strand report
//! stranded`'s self-contained HTML pages share (inline CSS and SVG, no
//! script, no network): escaping, number formats, charts. The category
//! colours and labels come from `strand_analysis::accounting::Leaf`, so
//! both pages draw a category the same way.

pub mod svg;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `1.25 s`, `435.6 ms`, `12.0 µs`, `3 h 20 min`.
pub fn fmt_duration(ns: i64) -> String {
    let a = ns.unsigned_abs() as f64;
    let sign = if ns < 0 { "-" } else { "" };
    if a >= 3600e9 {
        format!("{sign}{:.0} h {:.0} min", (a / 3600e9).floor(), (a % 3600e9) / 60e9)
    } else if a >= 60e9 {
        format!("{sign}{:.1} min", a / 60e9)
    } else if a >= 1e9 {
        format!("{sign}{:.2} s", a / 1e9)
    } else if a >= 1e6 {
        format!("{sign}{:.1} ms", a / 1e6)
    } else if a >= 1e3 {
        format!("{sign}{:.1} µs", a / 1e3)
    } else {
        format!("{sign}{a:.0} ns")
    }
}

/// A ratio as a percentage, `—` when unknown.
pub fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{:.1}%", v * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_times_read_as_people_write_them() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(fmt_duration(1_250_000_000), "1.25 s");
        assert_eq!(fmt_duration(12_000), "12.0 µs");
        assert_eq!(fmt_duration(3 * 3_600_000_000_000 + 20 * 60_000_000_000), "3 h 20 min");
        assert_eq!(pct(None), "—");
    }
}
