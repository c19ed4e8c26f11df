//! strand-render: what `strand postmortem`'s and `strand report
//! stranded`'s self-contained HTML pages share (inline CSS and SVG, no
//! script, no network): number formats and charts. The category colours
//! and labels come from `strand_analysis::accounting::Leaf`, so both pages
//! draw a category the same way.
//!
//! Both pages are [maud](https://maud.lambda.xyz/) templates: `html!` is
//! checked when strand compiles (an unclosed element or a misspelt
//! variable is a build error, not a broken page), every spliced value is
//! escaped unless wrapped in `PreEscaped` (which only the pages' own CSS
//! constants are), and the template is Rust code in the binary, so there is
//! no template file to ship or find and nothing to parse at run time.
//! Chart builders return [`maud::Markup`], which the pages splice in as is.

pub mod svg;

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
    fn times_read_as_people_write_them() {
        assert_eq!(fmt_duration(1_250_000_000), "1.25 s");
        assert_eq!(fmt_duration(12_000), "12.0 µs");
        assert_eq!(fmt_duration(3 * 3_600_000_000_000 + 20 * 60_000_000_000), "3 h 20 min");
        assert_eq!(pct(None), "—");
    }
}
