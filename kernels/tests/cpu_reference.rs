//! The CPU backend against naive references on random inputs. Coordinates
//! are small so the references can count covered nanoseconds one by one.

use proptest::prelude::*;
use std::collections::BTreeSet;
use strand_kernels::{Backend, Intervals, KernelsError, LogBuckets, Reducer, Values};

/// Segments of intervals built to hit the edge cases: empty segments, single
/// intervals, empty intervals, nesting (shared starts) and touching ends.
fn segments() -> impl Strategy<Value = (Vec<usize>, Vec<i64>, Vec<i64>)> {
    let interval = prop_oneof![
        (0i64..200, 0i64..40).prop_map(|(s, l)| (s, s + l)),
        (0i64..20).prop_map(|k| (k * 10, k * 10 + 10)), // touching neighbours
        (0i64..5, 0i64..100).prop_map(|(s, l)| (s * 50, s * 50 + l)), // shared starts, nested
        (0i64..200, 0i64..10).prop_map(|(s, l)| (s, s - l)), // empty or reversed
    ];
    prop::collection::vec(prop::collection::vec(interval, 0..25), 0..8).prop_map(|segs| {
        let mut offsets = vec![0];
        let (mut s, mut e) = (Vec::new(), Vec::new());
        for seg in segs {
            for (a, b) in seg {
                s.push(a);
                e.push(b);
            }
            offsets.push(s.len());
        }
        (offsets, s, e)
    })
}

fn covered(start: &[i64], end: &[i64]) -> BTreeSet<i64> {
    start.iter().zip(end).flat_map(|(&s, &e)| s..e).collect()
}

fn naive_union(o: &[usize], s: &[i64], e: &[i64]) -> Vec<i64> {
    o.windows(2).map(|w| covered(&s[w[0]..w[1]], &e[w[0]..w[1]]).len() as i64).collect()
}

/// B with A's segment count, cut from another random draw.
fn same_segments(nseg: usize, (bo, bs, be): (Vec<usize>, Vec<i64>, Vec<i64>)) -> (Vec<usize>, Vec<i64>, Vec<i64>) {
    let mut o: Vec<usize> = bo.into_iter().take(nseg + 1).collect();
    while o.len() < nseg + 1 {
        o.push(*o.last().unwrap_or(&0));
    }
    let n = o[nseg];
    (o, bs[..n].to_vec(), be[..n].to_vec())
}

fn values() -> impl Strategy<Value = (Vec<usize>, Vec<i64>)> {
    let v = prop_oneof![any::<i64>(), -1000i64..100_000, Just(0i64), Just(i64::MAX), Just(i64::MIN)];
    prop::collection::vec(prop::collection::vec(v, 0..30), 0..8).prop_map(|segs| {
        let mut offsets = vec![0];
        let mut vals = Vec::new();
        for seg in segs {
            vals.extend(seg);
            offsets.push(vals.len());
        }
        (offsets, vals)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn union_length_counts_covered_nanoseconds((o, s, e) in segments()) {
        let got = Reducer::cpu().union_length(Intervals { offsets: &o, start: &s, end: &e }).unwrap();
        prop_assert_eq!(got, naive_union(&o, &s, &e));
    }

    #[test]
    fn intersection_length_counts_nanoseconds_covered_by_both(a in segments(), b in segments()) {
        let (ao, as_, ae) = a;
        let (bo, bs, be) = same_segments(ao.len() - 1, b);
        let got = Reducer::cpu()
            .intersection_length(Intervals { offsets: &ao, start: &as_, end: &ae }, Intervals { offsets: &bo, start: &bs, end: &be })
            .unwrap();
        let want: Vec<i64> = ao.windows(2).zip(bo.windows(2)).map(|(wa, wb)| {
            let ca = covered(&as_[wa[0]..wa[1]], &ae[wa[0]..wa[1]]);
            let cb = covered(&bs[wb[0]..wb[1]], &be[wb[0]..wb[1]]);
            ca.intersection(&cb).count() as i64
        }).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn stats_match_a_fold((o, v) in values()) {
        let got = Reducer::cpu().stats(Values { offsets: &o, values: &v }).unwrap();
        for (st, w) in got.iter().zip(o.windows(2)) {
            let seg = &v[w[0]..w[1]];
            prop_assert_eq!(st.count, seg.len() as u64);
            prop_assert_eq!(st.sum, seg.iter().fold(0i64, |a, &x| a.wrapping_add(x)));
            prop_assert_eq!(st.min, seg.iter().min().copied());
            prop_assert_eq!(st.max, seg.iter().max().copied());
        }
    }

    #[test]
    fn histogram_puts_each_value_between_its_bucket_bounds((o, v) in values(), sub_bits in 0u32..=8) {
        let b = LogBuckets::new(sub_bits).unwrap();
        let h = Reducer::cpu().histogram(Values { offsets: &o, values: &v }, b).unwrap();
        for (s, w) in o.windows(2).enumerate() {
            // Naive: find each value's bucket by scanning the bounds.
            let mut want = vec![0u64; b.len()];
            for &x in &v[w[0]..w[1]] {
                let k = (0..b.len()).find(|&k| x.max(0) >= b.lower_bound(k) && (x.max(0) < b.upper_bound(k) || k + 1 == b.len())).unwrap();
                want[k] += 1;
            }
            prop_assert_eq!(h.segment(s), &want[..]);
        }
    }

    #[test]
    fn quantiles_stay_within_the_documented_error(vals in prop::collection::vec(1i64..1_000_000_000, 1..200), q in 0.0f64..=1.0) {
        let b = LogBuckets::DEFAULT;
        let h = Reducer::cpu().histogram(Values { offsets: &[0, vals.len()], values: &vals }, b).unwrap();
        let mut sorted = vals.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        let truth = sorted[rank - 1] as f64;
        let got = h.quantile(0, q).unwrap();
        let tol = if truth < 16.0 { 0.0 } else { truth * 2f64.powi(-(b.sub_bits as i32 + 1)) };
        prop_assert!((got - truth).abs() <= tol, "q={q}: got {got}, truth {truth}");
    }

    #[test]
    fn sync_stall_is_the_wait_for_the_last_rank_capped_by_duration(
        rows in prop::collection::vec((0u32..6, -1000i64..1000, 0i64..500), 0..60)
    ) {
        let group: Vec<u32> = rows.iter().map(|r| r.0).collect();
        let start: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let dur: Vec<i64> = rows.iter().map(|r| r.2).collect();
        let r = Reducer::cpu();
        let latest = r.max_per_group(&group, &start, 6).unwrap();
        let stall = r.sync_stall(&group, &start, &dur, 6).unwrap();
        for g in 0..6u32 {
            let want = rows.iter().filter(|x| x.0 == g).map(|x| x.1).max();
            prop_assert_eq!(latest[g as usize], want);
        }
        for (i, &(g, s, d)) in rows.iter().enumerate() {
            let last = rows.iter().filter(|x| x.0 == g).map(|x| x.1).max().unwrap();
            prop_assert_eq!(stall[i], (last - s).min(d));
        }
    }
}

#[test]
fn segments_of_intersection_must_agree() {
    let a = Intervals { offsets: &[0, 1], start: &[0], end: &[5] };
    let b = Intervals { offsets: &[0, 1, 1], start: &[0], end: &[5] };
    let e = Reducer::cpu().intersection_length(a, b).unwrap_err();
    assert_eq!(e, KernelsError::Input("a has 1 segments but b has 2".into()));
}

#[test]
fn backend_names_parse_and_unknown_names_are_refused() {
    assert_eq!("auto".parse::<Backend>(), Ok(Backend::Auto));
    assert_eq!("gpu".parse::<Backend>(), Ok(Backend::Gpu));
    assert_eq!("cpu".parse::<Backend>(), Ok(Backend::Cpu));
    assert!("cuda".parse::<Backend>().unwrap_err().contains("expected auto, gpu or cpu"));
}
