//! The one place where strand converts CLOCK_MONOTONIC to UTC.
//!
//! eBPF (`bpf_ktime_get_ns`) and the CUPTI injection library (its timestamp
//! callback) both stamp events with CLOCK_MONOTONIC, so their records join
//! without conversion. Rows store UTC: `utc = monotonic + offset`, where the
//! offset is CLOCK_REALTIME − CLOCK_MONOTONIC measured as the tightest of a few
//! bracketed reads. The offset moves only when NTP steps or slews the wall
//! clock, so sources re-measure it once per batch rather than per event.

fn read(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; both clocks exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of eBPF and CUPTI timestamps).
pub fn monotonic_ns() -> i64 {
    read(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch (UTC).
pub fn utc_now_ns() -> i64 {
    read(libc::CLOCK_REALTIME)
}

/// Converts CLOCK_MONOTONIC timestamps to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonoToUtc {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC.
    pub offset_ns: i64,
}

impl MonoToUtc {
    /// Measures the offset now: of five monotonic/realtime/monotonic brackets,
    /// the narrowest one wins (its midpoint error is at most half its width).
    pub fn measure() -> Self {
        let mut best = (i64::MAX, 0i64);
        for _ in 0..5 {
            let a = monotonic_ns();
            let r = utc_now_ns();
            let b = monotonic_ns();
            let width = b - a;
            if width < best.0 {
                best = (width, r - (a + width / 2));
            }
        }
        Self { offset_ns: best.1 }
    }

    pub fn to_utc(&self, monotonic_ns: i64) -> i64 {
        monotonic_ns + self.offset_ns
    }

    pub fn to_monotonic(&self, utc_ns: i64) -> i64 {
        utc_ns - self.offset_ns
    }
}

// Dates: chrono, the one date/time crate of strand. Arrow already links it
// (its temporal types), so the agent and the offline `strand` carry no
// second calendar; every door prints the same day for the same instant,
// before 1970 too.

/// The instant of a UTC-nanosecond timestamp. Every i64 is one (1677-09-21
/// to 2262-04-11), so this cannot fail.
pub fn utc(ts_ns: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_nanos(ts_ns)
}

/// `YYYY-MM-DD` of a UTC-nanosecond timestamp: the `date=` partition of
/// every table (one definition for the agent, the collector and import).
pub fn utc_date(ts_ns: i64) -> String {
    utc(ts_ns).format("%Y-%m-%d").to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a UTC-nanosecond timestamp (reports).
pub fn rfc3339(ts_ns: i64) -> String {
    utc(ts_ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// UTC nanoseconds of an RFC 3339 time (`2026-01-05T00:00:00Z`, any offset,
/// a space for the `T`); `None` for what is not one or lies outside the
/// range of an i64 of nanoseconds (1677–2262).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim())
        .or_else(|_| chrono::DateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f%:z"))
        .ok()?;
    t.timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_monotonic_now_is_utc_now() {
        let clock = MonoToUtc::measure();
        let converted = clock.to_utc(monotonic_ns());
        let now = utc_now_ns();
        assert!((now - converted).abs() < 5_000_000, "off by {} ns", now - converted);
        assert_eq!(clock.to_monotonic(clock.to_utc(42)), 42);
    }

    #[test]
    fn dates_are_utc_days_also_before_1970() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(utc_date(1_716_397_522_000_000_000), "2024-05-22");
        assert_eq!(rfc3339(1_767_571_200_000_000_000), "2026-01-05T00:00:00Z");
        assert_eq!(rfc3339(-1_000_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(&rfc3339(-86_400_000_000_000 * 365)[..10], utc_date(-86_400_000_000_000 * 365));
        assert_eq!(rfc3339(-86_400_000_000_000 * 365), "1969-01-01T00:00:00Z");
    }

    #[test]
    fn the_ends_of_the_nanosecond_range_print_and_parse_back() {
        assert_eq!(rfc3339(i64::MIN), "1677-09-21T00:12:43Z");
        assert_eq!(rfc3339(i64::MAX), "2262-04-11T23:47:16Z");
        assert_eq!(utc_date(i64::MIN), "1677-09-21");
        for t in [i64::MIN + 1_000_000_000, -1_000_000_000, 0, 1_767_571_200_000_000_000, i64::MAX - 1_000_000_000] {
            let whole = t.div_euclid(1_000_000_000) * 1_000_000_000;
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(whole), "{}", rfc3339(t));
        }
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1_000_000_000));
        assert_eq!(parse_rfc3339("2026-01-05T01:00:00+01:00"), Some(1_767_571_200_000_000_000));
        assert_eq!(parse_rfc3339("2026-01-05 00:00:00Z"), Some(1_767_571_200_000_000_000));
        assert_eq!(parse_rfc3339("2262-04-12T00:00:00Z"), None, "past the i64 range");
        assert_eq!(parse_rfc3339("1600-01-01T00:00:00Z"), None, "before the i64 range");
        assert_eq!(parse_rfc3339("2026-02-30T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
