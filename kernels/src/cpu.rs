//! CPU backend: the reference every GPU result must equal.
//! Inputs are validated by [`crate::Reducer`] before they reach these functions.

use std::ops::Range;

use crate::{Histogram, Intervals, LogBuckets, Stats, Values};

pub fn stats(v: Values) -> Vec<Stats> {
    v.offsets
        .windows(2)
        .map(|w| {
            let seg = &v.values[w[0]..w[1]];
            // One pass: sums, minima and maxima together.
            let (sum, min, max) = seg
                .iter()
                .fold((0i64, i64::MAX, i64::MIN), |(s, lo, hi), &x| (s.wrapping_add(x), lo.min(x), hi.max(x)));
            let any = !seg.is_empty();
            Stats { count: seg.len() as u64, sum, min: any.then_some(min), max: any.then_some(max) }
        })
        .collect()
}

/// Rows below which the CPU backend stays on the calling thread.
pub const PARALLEL_MIN_ROWS: usize = 1 << 15;

/// Runs `f` on up to `threads` consecutive ranges of segments holding about
/// equal numbers of rows (by `offsets`) and concatenates the results in
/// segment order. Every function of this module works on a sub-slice
/// `offsets[r.start..=r.end]` (row indices stay absolute), so the result
/// equals one call over all segments.
pub fn by_segments<T: Send>(offsets: &[usize], threads: usize, f: impl Fn(Range<usize>) -> Vec<T> + Sync) -> Vec<T> {
    let nseg = offsets.len() - 1;
    let rows = offsets[nseg];
    let parts = threads.min(nseg).min(rows / PARALLEL_MIN_ROWS.max(1) + 1);
    if parts <= 1 {
        return f(0..nseg);
    }
    let mut cuts = vec![0usize];
    for k in 1..parts {
        let s = offsets.partition_point(|&o| o < rows * k / parts).min(nseg);
        if s > *cuts.last().unwrap_or(&0) {
            cuts.push(s);
        }
    }
    cuts.push(nseg);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = cuts.windows(2).map(|c| scope.spawn(move || f(c[0]..c[1]))).collect();
        let mut out = Vec::with_capacity(nseg);
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Sorts the non-empty intervals of one segment into `scratch` and merges
/// them in place into disjoint, ordered intervals.
fn merged(start: &[i64], end: &[i64], scratch: &mut Vec<(i64, i64)>) {
    scratch.clear();
    scratch.extend(start.iter().zip(end).filter(|(s, e)| e > s).map(|(&s, &e)| (s, e)));
    scratch.sort_unstable();
    let mut out = 0usize;
    for i in 0..scratch.len() {
        let (s, e) = scratch[i];
        if out > 0 && s <= scratch[out - 1].1 {
            scratch[out - 1].1 = scratch[out - 1].1.max(e);
        } else {
            scratch[out] = (s, e);
            out += 1;
        }
    }
    scratch.truncate(out);
}

pub fn union_length(iv: Intervals) -> Vec<i64> {
    let mut scratch = Vec::new();
    iv.offsets
        .windows(2)
        .map(|w| {
            merged(&iv.start[w[0]..w[1]], &iv.end[w[0]..w[1]], &mut scratch);
            // Wrapping, like the GPU: only a length past i64::MAX wraps.
            scratch.iter().fold(0i64, |t, (s, e)| t.wrapping_add(e.wrapping_sub(*s)))
        })
        .collect()
}

pub fn intersection_length(a: Intervals, b: Intervals) -> Vec<i64> {
    let (mut ma, mut mb) = (Vec::new(), Vec::new());
    a.offsets
        .windows(2)
        .zip(b.offsets.windows(2))
        .map(|(wa, wb)| {
            merged(&a.start[wa[0]..wa[1]], &a.end[wa[0]..wa[1]], &mut ma);
            merged(&b.start[wb[0]..wb[1]], &b.end[wb[0]..wb[1]], &mut mb);
            let (mut i, mut j, mut total) = (0, 0, 0i64);
            while i < ma.len() && j < mb.len() {
                let lo = ma[i].0.max(mb[j].0);
                let hi = ma[i].1.min(mb[j].1);
                if hi > lo {
                    total = total.wrapping_add(hi.wrapping_sub(lo));
                }
                if ma[i].1 < mb[j].1 { i += 1 } else { j += 1 }
            }
            total
        })
        .collect()
}

pub fn histogram(v: Values, buckets: LogBuckets) -> Histogram {
    let n = buckets.len();
    let segments = v.offsets.len() - 1;
    let mut counts = vec![0u64; segments * n];
    for (s, w) in v.offsets.windows(2).enumerate() {
        for &x in &v.values[w[0]..w[1]] {
            counts[s * n + buckets.bucket(x)] += 1;
        }
    }
    Histogram { buckets, segments, counts }
}

pub fn max_per_group(group: &[u32], values: &[i64], groups: usize) -> Vec<Option<i64>> {
    let mut out: Vec<Option<i64>> = vec![None; groups];
    for (&g, &v) in group.iter().zip(values) {
        let slot = &mut out[g as usize];
        *slot = Some(slot.map_or(v, |m| m.max(v)));
    }
    out
}

pub fn sync_stall(group: &[u32], start: &[i64], duration: &[i64], groups: usize) -> Vec<i64> {
    let latest = max_per_group(group, start, groups);
    group
        .iter()
        .zip(start)
        .zip(duration)
        .map(|((&g, &s), &d)| {
            let wait = latest[g as usize].map_or(0, |m| m.wrapping_sub(s));
            wait.min(d).max(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Reducer};

    #[test]
    fn by_segments_covers_every_segment_once_in_order_and_balances_rows() {
        // 40 segments of 10 000 rows and one empty one.
        let offsets: Vec<usize> = (0..=40).map(|i| i * 10_000).chain([400_000]).collect();
        let parts = by_segments(&offsets, 4, |r| vec![r]);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.first().unwrap().start, 0);
        assert_eq!(parts.last().unwrap().end, 41);
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &parts {
            assert_eq!(offsets[r.end] - offsets[r.start], 100_000);
        }
        // Small batches stay on the calling thread.
        assert_eq!(by_segments(&[0, 10, 20], 4, |r| vec![r]), vec![0..2]);
    }

    #[test]
    fn extreme_coordinates_wrap_instead_of_panicking() {
        // Lengths past i64::MAX wrap modulo 2^64, as on the GPU.
        let iv = Intervals { offsets: &[0, 2], start: &[i64::MIN, 0], end: &[0, i64::MAX] };
        assert_eq!(union_length(iv), vec![-1]); // 2^64 - 1
        assert_eq!(intersection_length(iv, iv), vec![-1]);
        // A wait past i64::MAX wraps negative and clamps to 0 (the GPU does the same).
        assert_eq!(sync_stall(&[0, 0], &[i64::MIN, i64::MAX], &[i64::MAX, 5], 1), vec![0, 0]);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut offsets = vec![0usize];
        while *offsets.last().unwrap() < 300_000 {
            let n = if rng.bool() { rng.usize(0..50) } else { rng.usize(0..20_000) };
            offsets.push(offsets.last().unwrap() + n);
        }
        let rows = *offsets.last().unwrap();
        let s: Vec<i64> = (0..rows).map(|_| rng.i64(0..10_000_000)).collect();
        let e: Vec<i64> = s.iter().map(|&x| x + rng.i64(-10..5_000)).collect();
        let e2: Vec<i64> = s.iter().map(|&x| x + rng.i64(0..3_000)).collect();
        let a = Intervals { offsets: &offsets, start: &s, end: &e };
        let b = Intervals { offsets: &offsets, start: &e, end: &e2 };
        let v = Values { offsets: &offsets, values: &e };
        let one = Reducer::new(Backend::Cpu).unwrap();
        for t in [2, 3, 7] {
            let many = Reducer::cpu().with_cpu_threads(t);
            assert_eq!(many.stats(v).unwrap(), one.stats(v).unwrap());
            assert_eq!(many.union_length(a).unwrap(), one.union_length(a).unwrap());
            assert_eq!(many.intersection_length(a, b).unwrap(), one.intersection_length(a, b).unwrap());
            assert_eq!(many.histogram(v, LogBuckets::DEFAULT).unwrap(), one.histogram(v, LogBuckets::DEFAULT).unwrap());
        }
    }
}
