//! CPU backend: the reference every GPU result must equal.
//! Inputs are validated by [`crate::Reducer`] before they reach these functions.

use crate::{Histogram, Intervals, LogBuckets, Stats, Values};

pub fn stats(v: Values) -> Vec<Stats> {
    v.offsets
        .windows(2)
        .map(|w| {
            let seg = &v.values[w[0]..w[1]];
            Stats {
                count: seg.len() as u64,
                sum: seg.iter().fold(0i64, |a, &x| a.wrapping_add(x)),
                min: seg.iter().copied().min(),
                max: seg.iter().copied().max(),
            }
        })
        .collect()
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
            scratch.iter().map(|(s, e)| e - s).sum()
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
                    total += hi - lo;
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
            let wait = latest[g as usize].map_or(0, |m| m - s);
            wait.min(d).max(0)
        })
        .collect()
}
