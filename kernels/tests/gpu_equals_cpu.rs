//! On a machine with an NVIDIA GPU: every operation's GPU result equals the
//! CPU backend's, on random inputs from 1 to 10⁸ rows.
//!
//! Ignored by default, so that a machine without a GPU reports it as ignored
//! (with the reason) rather than passed. On a GPU machine, run it with
//! `--ignored`; without a usable GPU it then fails, saying why:
//!
//! ```text
//! cargo test --release -p strand-kernels --test gpu_equals_cpu -- --ignored --nocapture
//! ```
//!
//! `bench/gpu/validate.sh` runs the prebuilt executable that way.
//! `STRAND_GPU_TESTS_MAX_ROWS` (default 100000000) caps the sizes;
//! `STRAND_GPU_TESTS_SEED` replays a run (each run prints its seed).

use strand_kernels::{Backend, Intervals, LogBuckets, Reducer, Values};

fn max_rows() -> usize {
    std::env::var("STRAND_GPU_TESTS_MAX_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000_000)
}

fn rng() -> fastrand::Rng {
    let seed =
        std::env::var("STRAND_GPU_TESTS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed}");
    fastrand::Rng::with_seed(seed)
}

const SIZES: [usize; 9] = [1, 2, 33, 1000, 10_007, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// Segment sizes summing to `rows`: tiny (warp path), medium (block path),
/// large (split path) or one segment, with empty segments mixed in.
fn offsets(rng: &mut fastrand::Rng, rows: usize, shape: usize) -> Vec<usize> {
    let mut o = vec![0];
    let mut left = rows;
    while left > 0 {
        if rng.u8(..10) == 0 {
            o.push(*o.last().unwrap()); // empty segment
        }
        let n = match shape {
            0 => rng.usize(1..=40),
            1 => rng.usize(1..=3000),
            2 => rng.usize(1..=300_000),
            _ => left,
        }
        .min(left);
        o.push(o.last().unwrap() + n);
        left -= n;
    }
    o
}

/// Random non-zero intervals; `kind` 0: kernels in a window, 1: many equal
/// starts (nested), 2: starts spread over the whole i64 range.
fn intervals(rng: &mut fastrand::Rng, rows: usize, kind: usize) -> (Vec<i64>, Vec<i64>) {
    let mut s = Vec::with_capacity(rows);
    let mut e = Vec::with_capacity(rows);
    for _ in 0..rows {
        let (a, len) = match kind {
            0 => (rng.i64(1..10_000_000_000), rng.i64(-100..200_000)),
            1 => (rng.i64(1..50) * 1_000_000, rng.i64(1..3_000_000)),
            _ => (rng.i64(i64::MIN / 2..i64::MAX / 2), rng.i64(0..1 << 40)),
        };
        s.push(a);
        e.push(a + len);
    }
    (s, e)
}

fn gpu() -> Reducer {
    match Reducer::new(Backend::Gpu) {
        Ok(r) => {
            eprintln!("GPU: {}", r.gpu_description().unwrap_or("?"));
            r
        }
        Err(e) => panic!("this test needs a usable GPU: {e}"),
    }
}

#[test]
#[ignore = "needs a GPU: run with --ignored on a GPU machine (bench/gpu/validate.sh)"]
fn every_operation_matches_the_cpu_backend() {
    let (g, c, mut rng) = (gpu(), Reducer::cpu(), rng());
    // A small budget forces chunking, split segments and the CPU path for giants.
    let small = gpu().with_device_budget(8 << 20);
    for &rows in SIZES.iter().filter(|&&n| n <= max_rows()) {
        for shape in 0..4 {
            let o = offsets(&mut rng, rows, shape);
            let kind = shape % 3;
            let (s, e) = intervals(&mut rng, rows, kind);
            let iv = Intervals { offsets: &o, start: &s, end: &e };
            let v = Values { offsets: &o, values: &s };
            let t = std::time::Instant::now();
            for (name, r) in [("default budget", &g), ("8 MiB budget", &small)] {
                if name != "default budget" && rows > 10_000_000 {
                    continue;
                }
                let ctx = format!("{rows} rows, shape {shape}, {name}");
                assert_eq!(r.stats(v).unwrap(), c.stats(v).unwrap(), "stats, {ctx}");
                for b in [LogBuckets::DEFAULT, LogBuckets::new(8).unwrap()] {
                    assert_eq!(r.histogram(v, b).unwrap(), c.histogram(v, b).unwrap(), "histogram {b:?}, {ctx}");
                }
                assert_eq!(r.union_length(iv).unwrap(), c.union_length(iv).unwrap(), "union, {ctx}");
                // B: the same segments with other intervals.
                let (bs, be) = intervals(&mut rng, rows, kind);
                let b = Intervals { offsets: &o, start: &bs, end: &be };
                assert_eq!(
                    r.intersection_length(iv, b).unwrap(),
                    c.intersection_length(iv, b).unwrap(),
                    "intersection, {ctx}"
                );
                let groups = (rows / 8).max(1);
                let group: Vec<u32> = (0..rows).map(|_| rng.u32(..groups as u32)).collect();
                let dur: Vec<i64> = (0..rows).map(|_| rng.i64(1..1_000_000)).collect();
                assert_eq!(
                    r.max_per_group(&group, &s, groups + 3).unwrap(),
                    c.max_per_group(&group, &s, groups + 3).unwrap(),
                    "max_per_group, {ctx}"
                );
                assert_eq!(
                    r.sync_stall(&group, &s, &dur, groups).unwrap(),
                    c.sync_stall(&group, &s, &dur, groups).unwrap(),
                    "sync_stall, {ctx}"
                );
            }
            eprintln!("{rows:>11} rows, shape {shape}: all operations equal ({:.1} s)", t.elapsed().as_secs_f64());
        }
    }
}
