//! Property tests: the categories always add up to the window, and they
//! equal a brute-force count on a discrete timeline.

use std::sync::Arc;

use proptest::prelude::*;
use strand_analysis::decompose::DecomposeBatch;
use strand_analysis::{WindowBuilder, WindowConfig};
use strand_kernels::Reducer;
use strand_schemas::category::Category;
use strand_schemas::{KernelEvent, Table};

fn cat(i: u8) -> Category {
    match i % 3 {
        0 => Category::Compute,
        1 => Category::Communication,
        _ => Category::Copy,
    }
}

/// (category, start, end) with small integer times; some empty or inverted.
fn intervals() -> impl Strategy<Value = Vec<(u8, i64, i64)>> {
    prop::collection::vec((0u8..3, -20i64..220, 0i64..60), 0..40)
        .prop_map(|v| v.into_iter().map(|(c, s, len)| (c, s, s + len - 5)).collect())
}

proptest! {
    #[test]
    fn decomposition_matches_a_brute_force_count(iv in intervals(), t0 in -10i64..100, len in 0i64..150) {
        let t1 = t0 + len;
        let mut b = DecomposeBatch::default();
        b.begin_window(t0, t1);
        for &(c, s, e) in &iv {
            b.add(cat(c), s, e);
        }
        let d = b.run(&Reducer::cpu()).unwrap()[0];
        let (mut compute, mut comm_exp, mut copy_exp, mut idle, mut comm, mut overl) = (0, 0, 0, 0, 0, 0);
        for t in t0..t1 {
            let on = |k: u8| iv.iter().any(|&(c, s, e)| c % 3 == k && s <= t && t < e);
            let (c, m, x) = (on(0), on(1), on(2));
            if c { compute += 1 } else if m { comm_exp += 1 } else if x { copy_exp += 1 } else { idle += 1 }
            if m { comm += 1 }
            if m && c { overl += 1 }
        }
        prop_assert_eq!((d.compute_ns, d.comm_exposed_ns, d.memcpy_exposed_ns, d.idle_ns), (compute, comm_exp, copy_exp, idle));
        prop_assert_eq!((d.comm_ns, d.comm_overlapped_ns), (comm, overl));
        prop_assert_eq!(d.compute_ns + d.comm_exposed_ns + d.memcpy_exposed_ns + d.idle_ns, t1 - t0);
    }

    /// Whatever the order rows arrive in and whenever windows are closed,
    /// every window adds up, its idle classes add up to its idle, and the
    /// windows together equal one decomposition of the whole span.
    #[test]
    fn streamed_windows_add_up_in_any_arrival_order(
        iv in intervals(),
        launches in prop::collection::vec(prop::option::of(-30i64..250), 40),
        order in prop::collection::vec(any::<u32>(), 40),
        cuts in prop::collection::vec(0usize..40, 0..8),
    ) {
        let period = 50;
        // Rows arrive up to 40 time units out of order; the lateness (60) covers that.
        let cfg = WindowConfig { period_ns: period, lateness_ns: 60, launch_gap_ns: 7, kernel_records_complete: true, ..WindowConfig::default() };
        let mut b = WindowBuilder::new(cfg, Arc::new(Reducer::cpu())).unwrap();
        let mut rows: Vec<KernelEvent> = iv.iter().enumerate().filter(|(_, (_, s, e))| e >= s).map(|(i, &(c, s, e))| {
            let mut k = KernelEvent::example(i as u64);
            k.node = Arc::from("n");
            k.gpu_index = Some(0);
            k.start_ns = s;
            k.end_ns = e;
            k.category = cat(c).as_str().into();
            k.launch_ns = launches[i];
            k.source = "cupti".into();
            k
        }).collect();
        // Arrival order: start time plus a random delay of up to 40.
        let mut keyed: Vec<_> = rows.drain(..).enumerate().map(|(i, r)| (r.start_ns + (order[i] % 41) as i64, r)).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let rows: Vec<KernelEvent> = keyed.into_iter().map(|(_, r)| r).collect();
        let mut windows = Vec::new();
        let mut cuts = cuts.clone();
        cuts.sort();
        let mut from = 0;
        let mut now = i64::MIN;
        for c in cuts.into_iter().chain([rows.len()]) {
            let c = c.min(rows.len()).max(from);
            b.push_kernels(&rows[from..c]);
            now = rows[from..c].iter().map(|r| r.start_ns).fold(now, i64::max);
            from = c;
            windows.extend(b.close_until(now).unwrap());
        }
        windows.extend(b.flush().unwrap());
        prop_assert_eq!(b.stats().late_rows, 0);
        let mut whole = DecomposeBatch::default();
        let (lo, hi) = match (windows.first(), windows.last()) {
            (Some(f), Some(l)) => (f.start_ns, l.end_ns),
            _ => return Ok(()),
        };
        whole.begin_window(lo, hi);
        for r in &rows {
            whole.add(Category::parse(&r.category).unwrap(), r.start_ns, r.end_ns);
        }
        let d = whole.run(&Reducer::cpu()).unwrap()[0];
        let mut sum = [0i64; 6];
        let mut prev_end = lo;
        for w in &windows {
            prop_assert_eq!(w.start_ns, prev_end, "windows tile the span");
            prev_end = w.end_ns;
            let t = w.end_ns - w.start_ns;
            let (c, m, x, i) = (w.compute_ns.unwrap(), w.comm_exposed_ns.unwrap(), w.memcpy_exposed_ns.unwrap(), w.idle_ns.unwrap());
            prop_assert_eq!(c + m + x + i, t);
            let classes = w.idle_host_bound_ns.unwrap_or(0) + w.idle_launch_gap_ns.unwrap() + w.idle_io_blocked_ns.unwrap()
                + w.idle_no_process_ns.unwrap() + w.idle_other_ns.unwrap();
            prop_assert_eq!(classes, i, "idle classes add up to idle in {:?}", w);
            prop_assert!(w.idle_other_ns.unwrap() >= 0 && w.idle_launch_gap_ns.unwrap() >= 0);
            for (k, v) in [c, m, x, i, w.comm_ns.unwrap(), w.comm_overlapped_ns.unwrap()].into_iter().enumerate() {
                sum[k] += v;
            }
        }
        prop_assert_eq!(sum, [d.compute_ns, d.comm_exposed_ns, d.memcpy_exposed_ns, d.idle_ns, d.comm_ns, d.comm_overlapped_ns]);
    }
}
