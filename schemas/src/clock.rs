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

/// `(year, month, day)` of a day number since 1970-01-01 (proleptic
/// Gregorian calendar, any day; Howard Hinnant's days-to-civil).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a UTC-nanosecond timestamp: the `date=` partition of
/// every table (one definition for the agent, the collector and import).
pub fn utc_date(ts_ns: i64) -> String {
    let (y, m, d) = civil(ts_ns.div_euclid(86_400_000_000_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a UTC-nanosecond timestamp (reports).
pub fn rfc3339(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let s = secs.rem_euclid(86_400);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
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
    }
}
