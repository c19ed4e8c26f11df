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
}
