//! Benchmark of the reductions; driven by `bench/kernels_bench.sh`.
//!
//! For each size and operation it prints the GPU time with the data already
//! on the device (CUDA events, warm-up, median), its throughput in GB/s and as
//! a share of the device-to-device copy bandwidth measured in the same run,
//! the end-to-end GPU time (transfers included), the CPU backend's time on
//! the same host, and the speedups. `--backend cpu` runs the CPU part alone.
//!
//! ```text
//! cargo run --release -p strand-kernels --example kernels_bench -- \
//!     [--rows 1e4,1e5,...] [--backend cpu|gpu|both] [--reps 5] [--seg-rows 10000]
//!     [--cpu-max-rows 1e8] [--cpu-threads 1]   (0 = every hardware thread)
//! ```

use std::time::Instant;

use strand_kernels::gpu::{Gpu, bench};
use strand_kernels::{Backend, Intervals, LogBuckets, Reducer, Values};

struct Args {
    rows: Vec<usize>,
    backend: String,
    reps: usize,
    seg_rows: usize,
    cpu_max_rows: usize,
    cpu_threads: usize,
}

fn parse_count(s: &str) -> Result<usize, String> {
    s.parse::<f64>().map(|f| f as usize).map_err(|_| format!("not a row count: {s:?}"))
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        rows: [1e4, 1e5, 1e6, 1e7, 1e8, 1e9].iter().map(|&x| x as usize).collect(),
        backend: "both".into(),
        reps: 5,
        seg_rows: 10_000,
        cpu_max_rows: 100_000_000,
        cpu_threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--rows" => a.rows = v.split(',').map(parse_count).collect::<Result<_, _>>()?,
            "--backend" => a.backend = v,
            "--reps" => a.reps = parse_count(&v)?.max(1),
            "--seg-rows" => a.seg_rows = parse_count(&v)?.max(1),
            "--cpu-max-rows" => a.cpu_max_rows = parse_count(&v)?,
            "--cpu-threads" => a.cpu_threads = parse_count(&v)?,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(a)
}

/// Median wall time of `f` in ms over `reps` runs after one warm-up.
fn wall_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

struct Data {
    offsets: Vec<usize>,
    start: Vec<i64>,
    end: Vec<i64>,
    b_start: Vec<i64>,
    b_end: Vec<i64>,
    group: Vec<u32>,
    dur: Vec<i64>,
    groups: usize,
}

/// Kernel-like intervals: per segment, starts uniform over a window with
/// about 50% busy time, durations 1..2000 ns; collectives of 8 ranks.
fn data(rows: usize, seg_rows: usize, rng: &mut fastrand::Rng) -> Data {
    let offsets: Vec<usize> = (0..rows.div_ceil(seg_rows)).map(|i| i * seg_rows).chain([rows]).collect();
    let window = seg_rows as i64 * 2000;
    let mk = |rng: &mut fastrand::Rng| -> (Vec<i64>, Vec<i64>) {
        let s: Vec<i64> = (0..rows).map(|_| rng.i64(1..window)).collect();
        let e = s.iter().map(|&x| x + rng.i64(1..2000)).collect();
        (s, e)
    };
    let (start, end) = mk(rng);
    let (b_start, b_end) = mk(rng);
    let groups = rows.div_ceil(8);
    let group = (0..rows).map(|i| (i / 8) as u32).collect();
    let dur = (0..rows).map(|_| rng.i64(1..1_000_000)).collect();
    Data { offsets, start, end, b_start, b_end, group, dur, groups }
}

/// Bytes an operation must move at least: each input read once, output written once.
fn bytes(op: &str, rows: usize) -> f64 {
    (rows as f64)
        * match op {
            "stats" | "histogram" => 8.0,
            "union" => 16.0,
            "intersection" => 32.0,
            "max_per_group" => 12.0,
            _ => 28.0, // sync_stall: group, start, duration in; stall out
        }
}

const OPS: [&str; 6] = ["stats", "histogram", "union", "intersection", "max_per_group", "sync_stall"];

fn run_op(r: &Reducer, op: &str, d: &Data) {
    let iv = Intervals { offsets: &d.offsets, start: &d.start, end: &d.end };
    let v = Values { offsets: &d.offsets, values: &d.dur };
    let res = match op {
        "stats" => r.stats(v).map(|x| x.len()),
        "histogram" => r.histogram(v, LogBuckets::DEFAULT).map(|h| h.segments),
        "union" => r.union_length(iv).map(|x| x.len()),
        "intersection" => r
            .intersection_length(iv, Intervals { offsets: &d.offsets, start: &d.b_start, end: &d.b_end })
            .map(|x| x.len()),
        "max_per_group" => r.max_per_group(&d.group, &d.start, d.groups).map(|x| x.len()),
        _ => r.sync_stall(&d.group, &d.start, &d.dur, d.groups).map(|x| x.len()),
    };
    if let Err(e) = res {
        eprintln!("{op} failed: {e}");
        std::process::exit(1);
    }
}

/// Device-resident time (ms) of the ops the bench module exposes.
fn device_ms(g: &Gpu, op: &str, d: &Data, reps: usize) -> Option<f64> {
    let v = Values { offsets: &d.offsets, values: &d.dur };
    let r = match op {
        "stats" => bench::resident(g, v).and_then(|res| bench::time_ms(g, 3, reps, || bench::stats_device(g, &res))),
        "histogram" => bench::resident(g, v)
            .and_then(|res| bench::time_ms(g, 3, reps, || bench::histogram_device(g, &res, LogBuckets::DEFAULT))),
        "union" => {
            let iv = Intervals { offsets: &d.offsets, start: &d.start, end: &d.end };
            // Minus the restore of the scratch input, timed alone.
            bench::resident_intervals(g, iv).and_then(|mut res| {
                let all = bench::time_ms(g, 3, reps, || bench::union_device(&mut res))?;
                let restore = bench::time_ms(g, 3, reps, || bench::union_restore(&mut res))?;
                Ok((all - restore).max(1e-6))
            })
        }
        _ => return None,
    };
    match r {
        Ok(ms) => Some(ms),
        Err(e) => {
            eprintln!("device timing of {op} skipped: {e}");
            None
        }
    }
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kernels_bench: {e}");
            std::process::exit(2);
        }
    };
    let want_gpu = a.backend != "cpu";
    let want_cpu = a.backend != "gpu";
    let gpu = if want_gpu {
        match Reducer::new(Backend::Gpu) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("kernels_bench: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let raw_gpu = if want_gpu { Gpu::open().ok().map(|g| g.with_budget(usize::MAX / 4)) } else { None };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpu = Reducer::cpu().with_cpu_threads(a.cpu_threads);
    println!(
        "# strand-kernels benchmark; CPU backend with {} thread(s) on a host with {threads} hardware threads",
        cpu.cpu_threads()
    );
    let mut d2d = None;
    if let (Some(r), Some(g)) = (&gpu, &raw_gpu) {
        println!("# GPU: {}", r.gpu_description().unwrap_or("?"));
        match bench::d2d_copy_gbps(g, 1 << 30) {
            Ok(bw) => {
                println!("# device-to-device copy (1 GiB, read + write): {bw:.0} GB/s");
                d2d = Some(bw);
            }
            Err(e) => eprintln!("D2D copy measurement failed: {e}"),
        }
    }
    println!("| rows | op | GPU dev ms | GB/s | % of D2D | GPU e2e ms | CPU ms | speedup e2e | speedup dev |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut wins: Vec<(&str, Option<usize>)> = OPS.iter().map(|&o| (o, None)).collect();
    for &rows in &a.rows {
        let d = data(rows, a.seg_rows, &mut rng);
        let reps = a.reps.min((1e9 / rows as f64).ceil() as usize).max(1);
        for (k, &op) in OPS.iter().enumerate() {
            let dev = raw_gpu.as_ref().and_then(|g| device_ms(g, op, &d, a.reps));
            let e2e = gpu.as_ref().map(|g| wall_ms(reps, || run_op(g, op, &d)));
            let c = (want_cpu && rows <= a.cpu_max_rows).then(|| wall_ms(reps, || run_op(&cpu, op, &d)));
            let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.3}"));
            let gbs = dev.map(|ms| bytes(op, rows) / (ms * 1e6));
            let pct = gbs.zip(d2d).map(|(g, b)| format!("{:.0}%", 100.0 * g / b)).unwrap_or("–".into());
            let sp = |g: Option<f64>| c.zip(g).map_or("–".to_string(), |(c, g)| format!("{:.1}×", c / g));
            let cpu_col = c.map_or("–".to_string(), |v| format!("{v:.3}"));
            println!(
                "| {rows} | {op} | {} | {} | {pct} | {} | {cpu_col} | {} | {} |",
                f(dev),
                gbs.map_or("–".into(), |g| format!("{g:.0}")),
                f(e2e),
                sp(e2e),
                sp(dev)
            );
            if let (Some(c), Some(g)) = (c, e2e)
                && g < c
                && wins[k].1.is_none()
            {
                wins[k].1 = Some(rows);
            }
        }
    }
    if gpu.is_some() && want_cpu {
        println!();
        println!("Smallest batch (of the sizes run) where the GPU, transfers included, beats the CPU backend:");
        for (op, w) in wins {
            println!("- {op}: {}", w.map_or("none".to_string(), |r| format!("{r} rows")));
        }
    }
}
