//! Benchmark of the eBPF probes (docs/performance.md, "eBPF probes").
//!
//! 1. Cost per probed call: a process calls the fake `ncclAllReduce` N times,
//!    without and with the tracer attached; the difference per call is the
//!    cost of the entry and return uprobes and their BPF programs.
//! 2. Sustained rate: P processes call it as fast as they can for a while,
//!    the tracer polling every `--poll-ms`; reports records/s read and lost,
//!    and the CPU time `poll` took.
//!
//! 3. With `--real`: the cost per call on NVIDIA's real libnccl and
//!    libcudart from their PyPI wheels (`ncclAllReduce` refusing an invalid
//!    communicator, `cudaStreamSynchronize` without a driver), then exits.
//!
//! Needs root and a C compiler: `sudo cargo run --release -p strand-ebpf --example probe_bench`
//! or `bench/ebpf-probes.sh`.

#[path = "../tests/common/fakes.rs"]
mod fakes;
#[path = "../tests/common/real.rs"]
mod real;
#[path = "../tests/common/wheels.rs"]
mod wheels;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strand_ebpf::{Output, Tracer, TracerConfig};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok()).unwrap_or(default)
}

/// Runs `bench N` in a fake_app and returns its ns per call.
fn run_bench(f: &fakes::Fakes, calls: u64) -> f64 {
    let mut app = fakes::App::spawn(f, &[], &f.libdir, &["bench", &calls.to_string()]);
    app.go();
    let (lines, status) = app.finish();
    assert!(status.success(), "bench process failed");
    lines
        .iter()
        .find_map(|l| l.strip_prefix("bench ").and_then(|l| l.split("ns_per_call=").nth(1)))
        .and_then(|v| v.trim().parse().ok())
        .expect("bench line")
}

fn thread_cpu_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Kernel memory of this process's BPF maps (`memlock` in /proc/self/fdinfo).
fn bpf_map_memlock() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains("map_type:"))
        .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("memlock:").and_then(|v| v.trim().parse::<u64>().ok())))
        .sum()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("probe_bench loads BPF programs: run it as root");
        std::process::exit(2);
    }
    let calls = arg("--calls", 200_000);
    let procs = arg("--procs", 2);
    let seconds = arg("--seconds", 5);
    let poll_ms = arg("--poll-ms", 100);
    let ring = arg("--ring-mib", 4) as u32;

    let tmp = tempfile::tempdir().expect("tempdir");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("kernel {} cpus {}", release.trim(), std::thread::available_parallelism().map_or(0, |n| n.get()));
    if std::env::args().any(|a| a == "--real") {
        real_costs(tmp.path(), calls);
        return;
    }
    let f = fakes::build_fakes(tmp.path(), 22803, "2.28.3", false);

    // 1. Cost per call: the same loop without and with the probes.
    let bare: Vec<f64> = (0..3).map(|_| run_bench(&f, calls)).collect();
    let mut cfg = TracerConfig::new("bench", "bench");
    cfg.nccl_ring_bytes = ring << 20;
    cfg.extra_libraries = vec![f.libdir.join("libnccl.so.2")];
    let mut tracer = Tracer::start(cfg).expect("tracer");
    println!("BPF maps: {:.1} MiB of kernel memory (memlock)", bpf_map_memlock() as f64 / (1 << 20) as f64);
    let mut out = Output::default();
    let mut probed = Vec::new();
    for _ in 0..3 {
        let before = tracer.stats().nccl;
        let stop = AtomicBool::new(false);
        // Poll while the loop runs, as the agent would.
        let ns = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = run_bench(&f, calls);
                stop.store(true, Ordering::SeqCst);
                r
            });
            while !stop.load(Ordering::SeqCst) {
                tracer.poll(&mut out).expect("poll");
                out = Output::default();
                std::thread::sleep(Duration::from_millis(poll_ms));
            }
            h.join().expect("bench thread")
        });
        tracer.poll(&mut out).expect("poll");
        out = Output::default();
        let after = tracer.stats().nccl;
        probed.push(ns);
        println!(
            "  run: {ns:.0} ns/call probed; records read {} lost {}",
            after.events - before.events,
            after.lost - before.lost
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (bare, probed) = (median(&mut bare.clone()), median(&mut probed));
    println!(
        "per-call: {calls} ncclAllReduce calls, median of 3: {bare:.0} ns/call bare, {probed:.0} ns/call probed, \
         probe cost {:.2} us per call (entry + return uprobe)",
        (probed - bare) / 1000.0
    );

    // 2. Sustained rate: `procs` processes paced at a total rate, rising until records are lost.
    for total in [10_000u64, 25_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000] {
        let per_proc = total / procs;
        let before = tracer.stats();
        let n = per_proc * seconds;
        let mut apps: Vec<fakes::App> = (0..procs)
            .map(|_| fakes::App::spawn(&f, &[], &f.libdir, &["bench", &n.to_string(), &per_proc.to_string()]))
            .collect();
        for a in apps.iter_mut() {
            a.go();
        }
        let start = Instant::now();
        let (mut poll_cpu, mut polls) = (0i64, 0u64);
        let mut done = false;
        while !done {
            std::thread::sleep(Duration::from_millis(poll_ms));
            let c0 = thread_cpu_ns();
            tracer.poll(&mut out).expect("poll");
            poll_cpu += thread_cpu_ns() - c0;
            polls += 1;
            out = Output::default();
            done = apps.iter().all(|a| {
                std::fs::read_to_string(format!("/proc/{}/stat", a.pid)).is_ok_and(|s| s.contains(") Z"))
                    || std::fs::metadata(format!("/proc/{}", a.pid)).is_err()
            });
        }
        let elapsed = start.elapsed().as_secs_f64();
        for a in apps {
            let _ = a.finish();
        }
        tracer.poll(&mut out).expect("poll");
        out = Output::default();
        let after = tracer.stats();
        let read = after.nccl.events - before.nccl.events;
        let lost = after.nccl.lost - before.nccl.lost;
        println!(
            "sustained: asked {total} calls/s from {procs} processes, poll every {poll_ms} ms, ring {ring} MiB: \
             {:.0} records/s read, {lost} lost, poll CPU {:.1} ms per s ({:.2} us per record, {polls} polls)",
            read as f64 / elapsed,
            poll_cpu as f64 / 1e6 / elapsed,
            if read > 0 { poll_cpu as f64 / 1e3 / read as f64 } else { 0.0 }
        );
        if lost > 0 {
            break;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Per-call cost on the real libraries: a driver's `bench` loop, three runs
/// bare and three with the tracer probing the wheel's library.
fn real_costs(dir: &std::path::Path, calls: u64) {
    use std::ffi::OsStr;
    let n = calls.to_string();
    let id: String = (0..128u32).map(|i| format!("{:02x}", (i * 37 + 11) as u8)).collect();
    let mut cases: Vec<(String, std::path::PathBuf, Vec<std::ffi::OsString>)> = Vec::new();
    for (package, version) in
        [("nvidia-nccl-cu12", "2.16.2"), ("nvidia-nccl-cu13", "2.30.7"), ("nvidia-nccl-cu12", "2.32.3")]
    {
        if let Some(r) = real::nccl(package, version, dir) {
            let args = vec![r.lib.clone().into(), id.clone().into(), "bench".into(), n.clone().into()];
            cases.push((format!("ncclAllReduce, NCCL {version} ({package})"), r.driver, args));
        }
    }
    for (package, version, file) in [
        ("nvidia-cuda-runtime-cu12", "12.9.79", "libcudart.so.12"),
        ("nvidia-cuda-runtime", "13.5.37", "libcudart.so.13"),
    ] {
        if let Some(r) = real::cudart(package, version, file, dir) {
            let args = vec![r.lib.clone().into(), "bench".into(), n.clone().into()];
            cases.push((format!("cudaStreamSynchronize, CUDA runtime {version}"), r.driver, args));
        }
    }
    for (what, driver, args) in cases {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let run = || real::bench_ns(&real::run_driver(&driver, &args));
        let bare = median((0..3).map(|_| run()).collect());
        let mut cfg = TracerConfig::new("bench", "bench");
        cfg.extra_libraries = vec![std::path::PathBuf::from(args[0])];
        // Room for every record of a run, so that the cost is that of a kept record.
        (cfg.nccl_ring_bytes, cfg.cuda_ring_bytes) = (64 << 20, 64 << 20);
        let mut tracer = Tracer::start(cfg).expect("tracer");
        let mut out = Output::default();
        // Poll while the loop runs, as the agent would, so that no record is lost.
        let mut probed_runs = Vec::new();
        for _ in 0..3 {
            let stop = AtomicBool::new(false);
            let ns = std::thread::scope(|sc| {
                let h = sc.spawn(|| {
                    let r = run();
                    stop.store(true, Ordering::SeqCst);
                    r
                });
                while !stop.load(Ordering::SeqCst) {
                    tracer.poll(&mut out).expect("poll");
                    out = Output::default();
                    std::thread::sleep(Duration::from_millis(100));
                }
                h.join().expect("bench thread")
            });
            tracer.poll(&mut out).expect("poll");
            out = Output::default();
            probed_runs.push(ns);
        }
        let probed = median(probed_runs);
        let s = tracer.stats();
        println!(
            "real: {what}: {calls} calls, median of 3: {bare:.0} ns bare, {probed:.0} ns probed, \
             probe cost {:.2} us per call (records read {}, lost {})",
            (probed - bare) / 1000.0,
            s.nccl.events + s.cuda_sync.events,
            s.nccl.lost + s.cuda_sync.lost
        );
    }
}
