//! The tracer on NVIDIA's real libraries: `libnccl.so.2` and `libcudart.so`
//! from their PyPI wheels (fetched with pip, cached between runs; skipped,
//! saying so, only when the registry cannot be reached).
//!
//! Without a GPU the libraries run as far as their entry points: inits fail
//! on the missing driver and collectives refuse an invalid communicator, but
//! the uprobes fire with every argument as a real caller passes it. A driver
//! built against each release's own `nccl.h` calls every probed function and
//! logs each call; every captured row must equal what it logged, and the
//! commHash of the id given to `ncclCommInitRank` must equal what NCCL's own
//! hash code of that release computes (`tests/real/nccl_src/`), or be
//! unknown for releases newer than the tracer's table.
//!
//! Needs root, `cc`, `c++`, `python3 -m pip`.

#[path = "common/logged.rs"]
mod logged;
#[path = "common/real.rs"]
mod real;
#[path = "common/wheels.rs"]
mod wheels;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use logged::{Logged, check_time, dtype, redop};
use strand_ebpf::{Output, Part, Tracer, TracerConfig, nccl::NEWEST_CHECKED};
use strand_schemas::clock::MonoToUtc;
use strand_schemas::{CudaSyncCall, NcclCall};

static SERIAL: Mutex<()> = Mutex::new(());

/// The id every driver gives `ncclCommInitRank`: byte i is `i * 37 + 11`.
fn id_hex() -> String {
    (0..128u32).map(|i| format!("{:02x}", (i * 37 + 11) as u8)).collect()
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the real-library tests load BPF programs: run them as root (CI does)");
}

fn start_tracer(lib: PathBuf) -> Tracer {
    let mut cfg = TracerConfig::new("real", "node");
    cfg.extra_libraries = vec![lib];
    cfg.rescan_period = Duration::from_secs(3600); // only the driver matters
    let tracer = Tracer::start(cfg).unwrap_or_else(|e| panic!("tracer did not start: {e}"));
    for part in [Part::Nccl, Part::CudaSync] {
        let p = tracer.parts().iter().find(|p| p.part == part).expect("part");
        assert!(p.is_up(), "{p:?}");
    }
    tracer
}

fn poll_until(tracer: &mut Tracer, out: &mut Output, what: &str, done: impl Fn(&Output) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tracer.poll(out).expect("poll");
        if done(out) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; stats {:?}", tracer.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The NCCL functions the tracer probes that `version` exports: all but
/// those added later (ncclCommSplit 2.18, ncclAlltoAll 2.28, ncclCommGrow 2.29).
fn probed_in(version: (u32, u32)) -> Vec<&'static str> {
    let mut v = vec![
        "ncclGetVersion",
        "ncclGetUniqueId",
        "ncclCommInitRank",
        "ncclCommInitRankConfig",
        "ncclCommInitAll",
        "ncclCommDestroy",
        "ncclCommAbort",
        "ncclAllReduce",
        "ncclBroadcast",
        "ncclBcast",
        "ncclReduce",
        "ncclAllGather",
        "ncclReduceScatter",
        "ncclSend",
        "ncclRecv",
        "ncclGroupStart",
        "ncclGroupEnd",
    ];
    for (name, since) in [("ncclCommSplit", (2, 18)), ("ncclAlltoAll", (2, 28)), ("ncclCommGrow", (2, 29))] {
        if version >= since {
            v.push(name);
        }
    }
    v
}

/// The row a logged call must produce. No communicator is ever created
/// without a GPU, so no row has a sequence number, a rank from a
/// communicator, or a commHash other than the init's.
fn expected_row(pid: i32, l: &Logged, init_hash: Option<u64>) -> NcclCall {
    let mut row = NcclCall {
        cluster: "real".into(),
        node: "node".into(),
        pid,
        tid: l.i("tid") as i32,
        job_id: None,
        enter_ns: 0,
        exit_ns: None,
        op: l.s("op").to_string(),
        count: None,
        datatype: None,
        bytes: None,
        redop: None,
        root: None,
        peer: None,
        comm_ptr: None,
        comm_hash: None,
        comm_name: None,
        rank: None,
        nranks: None,
        seq: None,
        stream: None,
        ret: Some(l.i("ret") as i32),
        group_id: None,
        color: None,
        key: None,
        new_comm_ptr: None,
        gpu_index: None,
        gpu_uuid: None,
        kernel_start_ns: None,
        kernel_end_ns: None,
        source: "ebpf".to_string(),
    };
    match l.s("op") {
        "comm_init_rank" => {
            row.comm_hash = init_hash.map(|h| h as i64);
            row.rank = Some(l.i("rank") as i32);
            row.nranks = Some(l.i("nranks") as i32);
        }
        "comm_init_all" => row.nranks = Some(l.i("nranks") as i32),
        "comm_split" => {
            row.comm_ptr = Some(l.ptr("comm") as i64);
            row.color = Some(l.i("color") as i32);
            row.key = Some(l.i("key") as i32);
        }
        "comm_destroy" | "comm_abort" => row.comm_ptr = Some(l.ptr("comm") as i64),
        "group_start" | "group_end" => {}
        _ => {
            let (name, size) = dtype(l.i("dt"));
            let count = l.i("count");
            row.count = Some(count);
            row.datatype = Some(name.to_string());
            row.bytes = Some(count * size);
            row.comm_ptr = Some(l.ptr("comm") as i64);
            row.stream = Some(l.ptr("stream") as i64);
            row.redop = l.opt_i("redop").map(redop);
            row.root = l.opt_i("root").map(|r| r as i32);
            row.peer = l.opt_i("peer").map(|r| r as i32);
        }
    }
    row
}

fn real_nccl(package: &str, version: &str) {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(n) = real::nccl(package, version, tmp.path()) else { return };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().expect("numeric version"));
    let (major, minor) = (parts.next().expect("major"), parts.next().expect("minor"));
    let id = id_hex();
    let hashed = (major, minor) <= (NEWEST_CHECKED.major, NEWEST_CHECKED.minor);
    let init_hash = hashed.then(|| real::nccl_source_hash(version, &id, tmp.path()));

    let mut tracer = start_tracer(n.lib.clone());
    let files = tracer.library_files();
    let file = files.iter().find(|f| f.path == n.lib).expect("the wheel's libnccl is probed");
    assert_eq!((file.kind, file.nccl_version.as_deref()), ("nccl", Some(version)), "kind and version string");

    let lines = real::run_driver(&n.driver, &[n.lib.as_os_str(), OsStr::new(&id)]);
    let resolved: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("R ")).collect();
    assert_eq!(resolved, probed_in((major, minor)), "the probed functions NCCL {version} exports");
    assert_eq!(file.probes, 2 * resolved.len(), "an entry and a return probe on each");
    let code = lines.iter().find_map(|l| l.strip_prefix("V code=")).expect("ncclGetVersion line");
    let want_code = format!(
        "{}",
        major * 10000 + minor * 100 + version.split('.').nth(2).and_then(|p| p.parse::<u32>().ok()).expect("patch")
    );
    assert!(code.starts_with(&format!("{want_code} ")), "ncclGetVersion gave {code}");
    let unique_id = lines.iter().find_map(|l| l.strip_prefix("U ret=")).expect("ncclGetUniqueId line");
    eprintln!("NCCL {version} ({package}): ncclGetUniqueId without a GPU returned {unique_id}");

    let logged: Vec<Logged> = Logged::parse(&lines).into_iter().filter(|l| l.kind == 'C').collect();
    let mut out = Output::default();
    poll_until(&mut tracer, &mut out, "every row", |o| o.nccl_calls.len() >= logged.len());
    let mut got = out.nccl_calls.clone();
    got.sort_by_key(|r| r.enter_ns);
    assert_eq!(got.len(), logged.len(), "one row per call: {:#?}", got.iter().map(|r| &r.op).collect::<Vec<_>>());
    let pid = got[0].pid;
    assert!(got.iter().all(|r| r.pid == pid), "only the driver calls NCCL here");
    let clock = MonoToUtc::measure();
    let mut group = None;
    for (g, l) in got.iter().zip(&logged) {
        let mut e = expected_row(pid, l, init_hash);
        check_time(&clock, g.enter_ns, l.i("t0"), l.i("t1"), &format!("{} enter", l.s("op")));
        let exit = g.exit_ns.expect("every call returned");
        check_time(&clock, exit, l.i("t0"), l.i("t1"), &format!("{} exit", l.s("op")));
        (e.enter_ns, e.exit_ns) = (g.enter_ns, g.exit_ns);
        if l.i("group") != 0 {
            let id = g.group_id.expect("a call in a group has its id");
            assert_eq!(*group.get_or_insert(id), id, "one group");
            e.group_id = Some(id);
        }
        assert_eq!(g, &e, "NCCL {version}: call {l:?}");
    }

    let stats = tracer.stats();
    for name in &resolved {
        assert!(stats.calls.get(name).copied().unwrap_or(0) >= 1, "{name} never fired on NCCL {version}: {stats:?}");
    }
    assert_eq!(stats.nccl.lost, 0);
    for bad in ["attach_failed", "event_malformed", "symbol_missing", "nccl_version_string_missing"] {
        assert!(!stats.errors.contains_key(bad), "{bad}: {stats:?}");
    }
    // Newer than the table: unknown, never a guess.
    assert_eq!(stats.errors.contains_key("nccl_version_unsupported"), !hashed, "{stats:?}");
    if !hashed {
        assert!(got.iter().all(|r| r.comm_hash.is_none()));
    }
}

macro_rules! nccl_tests {
    ($($name:ident: $package:literal $version:literal,)*) => {$(
        #[test]
        fn $name() {
            real_nccl($package, $version);
        }
    )*};
}

// The oldest and the newest cu12 wheels, the newest release in the hash
// table and the first one after it (cu13).
nccl_tests! {
    nccl_cu12_2_16_2: "nvidia-nccl-cu12" "2.16.2",
    nccl_cu12_2_32_3: "nvidia-nccl-cu12" "2.32.3",
    nccl_cu13_2_30_7: "nvidia-nccl-cu13" "2.30.7",
    nccl_cu13_2_31_2: "nvidia-nccl-cu13" "2.31.2",
}

fn real_cudart(package: &str, version: &str, file: &str) {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(rt) = real::cudart(package, version, file, tmp.path()) else { return };
    let mut tracer = start_tracer(rt.lib.clone());
    let files = tracer.library_files();
    let probed = files.iter().find(|f| f.path == rt.lib).expect("the wheel's libcudart is probed");
    assert_eq!((probed.kind, probed.probes), ("cudart", 6), "three functions, two probes each");

    let lines = real::run_driver(&rt.driver, &[rt.lib.as_os_str()]);
    let logged: Vec<Logged> = Logged::parse(&lines).into_iter().filter(|l| l.kind == 'S').collect();
    let mut out = Output::default();
    poll_until(&mut tracer, &mut out, "every row", |o| o.cuda_sync_calls.len() >= logged.len());
    let mut got: Vec<&CudaSyncCall> = out.cuda_sync_calls.iter().collect();
    got.sort_by_key(|r| r.enter_ns);
    assert_eq!(got.len(), logged.len());
    let clock = MonoToUtc::measure();
    for (g, l) in got.iter().zip(&logged) {
        assert_eq!((g.api.as_str(), g.tid as i64, g.ret), (l.s("api"), l.i("tid"), Some(l.i("ret") as i32)));
        let handle = (l.s("handle") != "-").then(|| l.ptr("handle") as i64);
        assert_eq!(g.handle, handle, "{}", g.api);
        check_time(&clock, g.enter_ns, l.i("t0"), l.i("t1"), "enter");
        check_time(&clock, g.exit_ns, l.i("t0"), l.i("t1"), "exit");
        assert_eq!(g.blocked_ns, g.exit_ns - g.enter_ns);
    }
    let stats = tracer.stats();
    for name in ["cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"] {
        assert!(stats.calls.get(name).copied().unwrap_or(0) >= 1, "{name} never fired in {version}: {stats:?}");
    }
    assert!(!stats.errors.contains_key("attach_failed"), "{stats:?}");
}

#[test]
fn cudart_cu12_12_0_107() {
    real_cudart("nvidia-cuda-runtime-cu12", "12.0.107", "libcudart.so.12");
}

#[test]
fn cudart_cu12_12_9_79() {
    real_cudart("nvidia-cuda-runtime-cu12", "12.9.79", "libcudart.so.12");
}

#[test]
fn cudart_13_5_37() {
    real_cudart("nvidia-cuda-runtime", "13.5.37", "libcudart.so.13");
}
