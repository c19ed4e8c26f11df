//! End-to-end tests of the tracer against fake NCCL / CUDA libraries built
//! from `tests/fake/*.c` with the real signatures. A test program makes known
//! calls and logs each one; every captured row must equal what it logged.
//!
//! They load BPF programs, so they need root (CI runs as root), and a C
//! compiler (`cc`). Tests run one at a time: each starts its own tracer.
//!
//! The scenarios run three times: on the host as it is, and again (by
//! `in_a_mount_namespace_*`, which run this binary again) in a private mount
//! namespace where the test mounts tracefs, and in one where tracefs and
//! debugfs are unmounted. So both kinds of host are covered on any machine.

#[path = "common/fakes.rs"]
mod fakes;
#[path = "common/logged.rs"]
mod logged;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fakes::{App, Fakes, build_fakes};
use logged::{Logged, check_time, dtype, redop};

use strand_ebpf::{Output, Part, PartState, ProcessHook, Tracer, TracerConfig};
use strand_schemas::clock::MonoToUtc;
use strand_schemas::{CudaSyncCall, NcclCall, ProcessEvent};

static SERIAL: Mutex<()> = Mutex::new(());

/// Set by `in_a_mount_namespace_*` for the scenarios it runs: `tracefs` or `none`.
const MOUNTS_ENV: &str = "STRAND_TEST_MOUNTS";
const TRACEFS_EVENTS: [&str; 2] = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"];

fn tracefs_mounted() -> bool {
    TRACEFS_EVENTS.iter().any(|p| std::path::Path::new(p).is_dir())
}

/// In a namespace run, checks that the mounts are what the run promised.
fn check_mounts() {
    match std::env::var(MOUNTS_ENV).as_deref() {
        Ok("none") => assert!(!tracefs_mounted(), "tracefs is visible in the namespace without it"),
        Ok("tracefs") => assert!(tracefs_mounted(), "tracefs is not mounted in the namespace with it"),
        _ => {}
    }
}

/// Every part is up, exec and exit by their BTF raw tracepoints (which do
/// not need tracefs), whatever the mounts.
fn assert_all_parts_up(tracer: &Tracer) {
    for p in tracer.parts() {
        assert_eq!(p.state, PartState::Up, "{p:?}");
        if matches!(p.part, Part::Exec | Part::Exit) {
            assert!(p.detail.starts_with("tp_btf/"), "{p:?}");
        }
    }
    assert_eq!(tracer.parts().len(), Part::ALL.len());
    assert!(tracer.stats().part_errors.is_empty(), "{:?}", tracer.stats());
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "strand-ebpf's tracer tests load BPF programs and attach uprobes: run them as root \
             (CI does), e.g. `sudo -E cargo test -p strand-ebpf`"
        );
    }
}

const CLUSTER: &str = "test-cluster";
const NODE: &str = "test-node";

fn start_tracer(extra: Vec<PathBuf>) -> Tracer {
    check_mounts();
    let mut cfg = TracerConfig::new(CLUSTER, NODE);
    cfg.rescan_period = Duration::from_millis(200);
    cfg.extra_libraries = extra;
    let tracer = Tracer::start(cfg).unwrap_or_else(|e| panic!("tracer did not start: {e}"));
    assert_all_parts_up(&tracer);
    tracer
}

/// Polls every 50 ms until `done(out)` or 20 s.
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

/// The test's model of the communicators of one process, as NCCL would see them.
#[derive(Default)]
struct Model {
    comms: HashMap<u64, CommModel>,
}

#[derive(Clone, Default)]
struct CommModel {
    hash: Option<u64>,
    rank: Option<i32>,
    nranks: Option<i32>,
    next_seq: i64,
    p2p: HashMap<(i64, bool), i64>,
    splits: u32,
}

fn base_row(pid: i32, l: &Logged) -> NcclCall {
    NcclCall {
        cluster: CLUSTER.into(),
        node: NODE.into(),
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
        ret: l.opt_i("ret").map(|r| r as i32),
        group_id: None,
        color: None,
        key: None,
        new_comm_ptr: None,
        gpu_index: None,
        gpu_uuid: None,
        kernel_start_ns: None,
        kernel_end_ns: None,
        source: "ebpf".to_string(),
    }
}

fn set_identity(row: &mut NcclCall, c: Option<&CommModel>) {
    if let Some(c) = c {
        row.comm_hash = c.hash.map(|h| h as i64);
        row.rank = c.rank;
        row.nranks = c.nranks;
    }
}

/// The rows NCCL calls logged by one process must produce (times and group
/// ids are checked separately).
fn expected_nccl(f: &Fakes, pid: i32, logged: &[Logged]) -> Vec<NcclCall> {
    let mut m = Model::default();
    let mut rows = Vec::new();
    for l in logged.iter().filter(|l| l.kind == 'C') {
        let mut row = base_row(pid, l);
        match l.s("op") {
            "comm_init_rank" => {
                let c = CommModel {
                    hash: Some(f.root_hash(l.s("id"))),
                    rank: Some(l.i("rank") as i32),
                    nranks: Some(l.i("nranks") as i32),
                    ..CommModel::default()
                };
                set_identity(&mut row, Some(&c));
                let new = l.ptr("newcomm");
                row.new_comm_ptr = (new != 0).then_some(new as i64);
                m.comms.insert(new, c);
            }
            "comm_init_all" => {
                let hash = f.root_hash(l.s("id"));
                let n = l.i("nranks") as i32;
                row.comm_hash = Some(hash as i64);
                row.nranks = Some(n);
                row.new_comm_ptr = Some(l.ptr("comm0") as i64);
                for i in 0..n {
                    let c = CommModel { hash: Some(hash), rank: Some(i), nranks: Some(n), ..CommModel::default() };
                    m.comms.insert(l.ptr(&format!("comm{i}")), c);
                }
            }
            "comm_split" => {
                let parent = l.ptr("comm");
                let p = m.comms.get_mut(&parent).expect("split of a known comm");
                p.splits += 1;
                let color = l.i("color") as i32;
                let child =
                    CommModel { hash: p.hash.map(|h| f.split_hash(h, p.splits, color)), ..CommModel::default() };
                row.comm_ptr = Some(parent as i64);
                row.color = Some(color);
                row.key = Some(l.i("key") as i32);
                let new = l.ptr("newcomm");
                row.new_comm_ptr = (new != 0).then_some(new as i64);
                set_identity(&mut row, Some(&child));
                if new != 0 {
                    m.comms.insert(new, child);
                }
            }
            "comm_destroy" | "comm_abort" => {
                let comm = l.ptr("comm");
                row.comm_ptr = Some(comm as i64);
                set_identity(&mut row, m.comms.get(&comm));
                m.comms.remove(&comm);
            }
            "group_start" | "group_end" => {}
            op => {
                let comm = l.ptr("comm");
                let count = l.i("count");
                let (name, size) = dtype(l.i("dt"));
                row.count = Some(count);
                row.datatype = Some(name.to_string());
                row.bytes = Some(count * size);
                row.comm_ptr = Some(comm as i64);
                row.stream = Some(l.ptr("stream") as i64);
                row.redop = l.opt_i("redop").map(redop);
                row.root = l.opt_i("root").map(|r| r as i32);
                row.peer = l.opt_i("peer").map(|r| r as i32);
                let c = m.comms.get_mut(&comm);
                set_identity(&mut row, c.as_deref());
                if let Some(c) = c {
                    row.seq = Some(match op {
                        "send" | "recv" => {
                            let n = c.p2p.entry((l.i("peer"), op == "recv")).or_default();
                            *n += 1;
                            *n - 1
                        }
                        _ => {
                            c.next_seq += 1;
                            c.next_seq - 1
                        }
                    });
                }
            }
        }
        rows.push(row);
    }
    rows
}

/// Compares the NCCL rows of one process with its log, field by field.
fn check_nccl(f: &Fakes, pid: i32, lines: &[String], got: &[NcclCall]) {
    let logged: Vec<Logged> = Logged::parse(lines).into_iter().filter(|l| l.kind == 'C').collect();
    let mut got: Vec<NcclCall> = got.iter().filter(|r| r.pid == pid).cloned().collect();
    got.sort_by_key(|r| r.enter_ns);
    let expected = expected_nccl(f, pid, &logged);
    assert_eq!(
        got.len(),
        expected.len(),
        "pid {pid}: captured {:#?}\nlogged {logged:#?}",
        got.iter().map(|r| &r.op).collect::<Vec<_>>()
    );
    let clock = MonoToUtc::measure();
    let mut groups: HashMap<i64, i64> = HashMap::new();
    for ((g, mut e), l) in got.iter().zip(expected).zip(&logged) {
        check_time(&clock, g.enter_ns, l.i("t0"), l.i("t1"), &format!("{} enter", l.s("op")));
        e.enter_ns = g.enter_ns;
        if let Some(exit) = g.exit_ns {
            check_time(&clock, exit, l.i("t0"), l.i("t1"), &format!("{} exit", l.s("op")));
            assert!(exit >= g.enter_ns);
        }
        e.exit_ns = g.exit_ns.or(Some(-1)); // a returned call must have an exit time
        let app_group = l.i("group");
        match (app_group, g.group_id) {
            (0, None) => {}
            (0, Some(id)) => panic!("{} outside a group got group_id {id}", l.s("op")),
            (n, Some(id)) => {
                assert_eq!(*groups.entry(n).or_insert(id), id, "group {n} has one id");
                assert_eq!(groups.values().filter(|&&v| v == id).count(), 1, "group ids are distinct");
            }
            (n, None) => panic!("{} in group {n} has no group_id", l.s("op")),
        }
        e.group_id = g.group_id;
        assert_eq!(g, &e, "pid {pid} call {l:?}");
    }
}

fn check_cuda(pid: i32, lines: &[String], got: &[CudaSyncCall]) {
    let logged: Vec<Logged> = Logged::parse(lines).into_iter().filter(|l| l.kind == 'S').collect();
    let mut got: Vec<&CudaSyncCall> = got.iter().filter(|r| r.pid == pid).collect();
    got.sort_by_key(|r| r.enter_ns);
    assert_eq!(got.len(), logged.len(), "one row per outermost synchronize call (nested ones are folded)");
    let clock = MonoToUtc::measure();
    for (g, l) in got.iter().zip(&logged) {
        assert_eq!(g.api, l.s("api"));
        assert_eq!(g.tid as i64, l.i("tid"));
        assert_ne!(g.tid, pid, "the sync calls ran on a second thread");
        assert_eq!(g.ret, Some(l.i("ret") as i32));
        let handle = match l.s("handle") {
            "-" => None,
            _ => Some(l.ptr("handle") as i64),
        };
        assert_eq!(g.handle, handle, "{}", g.api);
        check_time(&clock, g.enter_ns, l.i("t0"), l.i("t1"), "sync enter");
        check_time(&clock, g.exit_ns, l.i("t0"), l.i("t1"), "sync exit");
        assert_eq!(g.blocked_ns, g.exit_ns - g.enter_ns);
        // Each fake call sleeps at least 1 ms.
        assert!(g.blocked_ns >= 1_000_000, "{} blocked {} ns", g.api, g.blocked_ns);
        assert_eq!((g.cluster.as_ref(), g.node.as_ref(), g.source.as_str()), (CLUSTER, NODE, "ebpf"));
    }
}

fn events_of(out: &Output, pid: i32) -> Vec<&ProcessEvent> {
    out.process_events.iter().filter(|e| e.pid == pid).collect()
}

fn id_hex(seed: u8) -> String {
    (0..128u32).map(|i| format!("{:02x}", (i * 37 + 11 + seed as u32 * 101) as u8)).collect()
}

#[test]
fn captures_every_call_of_known_processes() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = build_fakes(tmp.path(), 22803, "2.28.3", false);

    // A process already mapping the libraries when the tracer starts: found
    // by the /proc scan, reported as `running`.
    let mut holder = App::spawn(&f, &[], &f.libdir, &["hold"]);
    let mut tracer = start_tracer(Vec::new());
    let mut out = Output::default();
    // libnccl, libcudart, libcuda probed once each: 19 NCCL functions (the
    // fake has no ncclCommGrow), 3 + 3 CUDA ones, an entry and a return probe each.
    let mut ours: Vec<(&'static str, usize)> = tracer
        .library_files()
        .into_iter()
        .filter(|l| l.path.to_string_lossy().contains(&*tmp.path().to_string_lossy()))
        .map(|l| (l.kind, l.probes))
        .collect();
    ours.sort();
    assert_eq!(ours, [("cuda", 6), ("cudart", 6), ("nccl", 38)]);

    // Two communicators from two unique ids: A over 4 ranks, B over ranks 0 and 1.
    let (ida, idb) = (id_hex(1), id_hex(2));
    let mut ranks: Vec<App> = (0..4)
        .map(|r| {
            let (b, rb, nb) = if r < 2 { (idb.as_str(), r, 2) } else { ("-", 0, 0) };
            let code = if r == 3 { "3" } else { "0" };
            let (r, rb, nb) = (r.to_string(), rb.to_string(), nb.to_string());
            App::spawn(&f, &[], &f.libdir, &["rank", &ida, &r, "4", b, &rb, &nb, code])
        })
        .collect();
    let mut initall = App::spawn(&f, &[], &f.libdir, &["initall", "2"]);
    let mut hang = App::spawn(&f, &[], &f.libdir, &["hang", &id_hex(3)]);
    for app in ranks.iter_mut() {
        app.go();
    }
    initall.go();
    hang.go();
    loop {
        let line = hang.read_line();
        assert!(!line.is_empty(), "hang process ended early");
        if line.trim() == "hanging" {
            break;
        }
    }
    // SAFETY: kill() on our own child's pid.
    unsafe { libc::kill(hang.pid, libc::SIGKILL) };
    let hang_pid = hang.pid;
    let (_, hang_status) = hang.finish();
    assert!(!hang_status.success());

    let rank_pids: Vec<i32> = ranks.iter().map(|a| a.pid).collect();
    let rank_logs: Vec<(Vec<String>, ExitStatus)> = ranks.into_iter().map(App::finish).collect();
    let initall_pid = initall.pid;
    let (initall_log, _) = initall.finish();
    let holder_pid = holder.pid;
    drop(holder.stdin.take());
    let (_, holder_status) = holder.finish();
    assert!(holder_status.success());
    for (i, (_, st)) in rank_logs.iter().enumerate() {
        assert_eq!(st.code(), Some(if i == 3 { 3 } else { 0 }), "rank {i} exit status");
    }

    let n_logged = |lines: &[String], k: char| Logged::parse(lines).iter().filter(|l| l.kind == k).count();
    let want_nccl: usize =
        rank_logs.iter().map(|(l, _)| n_logged(l, 'C')).sum::<usize>() + n_logged(&initall_log, 'C') + 2;
    let want_cuda: usize = rank_logs.iter().map(|(l, _)| n_logged(l, 'S')).sum();
    let all_pids: Vec<i32> = rank_pids.iter().copied().chain([initall_pid, hang_pid, holder_pid]).collect();
    poll_until(&mut tracer, &mut out, "every row and exit", |o| {
        o.nccl_calls.iter().filter(|r| all_pids.contains(&r.pid)).count() >= want_nccl
            && o.cuda_sync_calls.iter().filter(|r| all_pids.contains(&r.pid)).count() >= want_cuda
            && all_pids.iter().all(|p| o.process_events.iter().any(|e| e.pid == *p && e.kind == "exit"))
    });

    for (pid, (lines, _)) in rank_pids.iter().zip(&rank_logs) {
        check_nccl(&f, *pid, lines, &out.nccl_calls);
        check_cuda(*pid, lines, &out.cuda_sync_calls);
    }
    check_nccl(&f, initall_pid, &initall_log, &out.nccl_calls);

    // The same collective has the same (commHash, seq) on every rank of its communicator.
    let hash_a = f.root_hash(&ida) as i64;
    let mut by_seq: HashMap<i64, Vec<&NcclCall>> = HashMap::new();
    for r in out.nccl_calls.iter().filter(|r| r.comm_hash == Some(hash_a) && rank_pids.contains(&r.pid)) {
        if let Some(seq) = r.seq
            && !matches!(r.op.as_str(), "send" | "recv")
        {
            by_seq.entry(seq).or_default().push(r);
        }
    }
    assert_eq!(by_seq.len(), 9, "9 collectives on communicator A");
    for (seq, calls) in &by_seq {
        assert_eq!(calls.len(), 4, "seq {seq} seen on all 4 ranks");
        assert!(calls.iter().all(|c| c.op == calls[0].op && c.count == calls[0].count), "seq {seq} is one collective");
        let mut ranks: Vec<_> = calls.iter().map(|c| c.rank).collect();
        ranks.sort();
        assert_eq!(ranks, vec![Some(0), Some(1), Some(2), Some(3)]);
    }

    // The call cut by SIGKILL: no return, no exit time; its process ended by signal 9.
    let hung: Vec<&NcclCall> = out.nccl_calls.iter().filter(|r| r.pid == hang_pid).collect();
    assert_eq!(hung.len(), 2, "init and the unfinished all-reduce: {hung:#?}");
    assert_eq!((hung[1].op.as_str(), hung[1].exit_ns, hung[1].ret, hung[1].seq), ("allreduce", None, None, Some(0)));
    assert_eq!(hung[1].comm_hash, Some(f.root_hash(&id_hex(3)) as i64));

    let ev = events_of(&out, holder_pid);
    assert_eq!(ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["running", "exit"]);
    assert_eq!(ev[0].gpu_libraries.as_deref(), Some("nccl,cudart,cuda"));
    assert_eq!((ev[1].exit_code, ev[1].signal), (Some(0), None));
    for (i, pid) in rank_pids.iter().enumerate() {
        let ev = events_of(&out, *pid);
        assert_eq!(ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["exec", "exit"], "rank {i}");
        assert!(ev[0].exe.as_deref().is_some_and(|e| e.ends_with("/fake_app")), "{:?}", ev[0].exe);
        assert_eq!(ev[0].comm.as_deref(), Some("fake_app"));
        assert_eq!(ev[0].ppid, Some(std::process::id() as i32));
        assert_eq!(ev[0].gpu_libraries.as_deref(), Some("nccl,cudart,cuda"), "libraries of the whole batch");
        assert_eq!(ev[1].exit_code, Some(if i == 3 { 3 } else { 0 }));
        assert_eq!(ev[1].signal, None);
        assert_eq!(ev[1].gpu_libraries.as_deref(), Some("nccl,cudart,cuda"));
        assert!(ev[0].ts_ns <= ev[1].ts_ns);
    }
    let ev = events_of(&out, hang_pid);
    assert_eq!(ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["exec", "exit"]);
    assert_eq!((ev[1].exit_code, ev[1].signal), (None, Some(libc::SIGKILL)));

    let stats = tracer.stats();
    assert_eq!((stats.nccl.lost, stats.cuda_sync.lost, stats.process.lost), (0, 0, 0), "{stats:?}");
    for bad in ["attach_failed", "event_malformed", "library_not_elf", "nccl_version_unknown", "symbol_missing"] {
        assert!(!stats.errors.contains_key(bad), "{bad}: {stats:?}");
    }
}

#[test]
fn stripped_library_in_a_private_mount_is_found_after_exec() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    // An older NCCL: DJB2a commHash and the 2.18-2.23 split format.
    let f = build_fakes(tmp.path(), 22105, "2.21.5", true);
    // Stripped: no .symtab section, so its name is not in the section name table.
    let bytes = std::fs::read(f.libdir.join("libnccl.so.2")).expect("read libnccl");
    assert!(!bytes.windows(8).any(|w| w == b".symtab\0"), "the library is stripped");
    assert!(bytes.windows(8).any(|w| w == b".dynsym\0"));

    // Each process binds the library directory on an empty directory in its
    // own mount namespace: the path in its maps does not exist for the tracer.
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let (src, dst) = (f.libdir.to_str().expect("utf-8"), mnt.to_str().expect("utf-8"));
    assert!(!mnt.join("libnccl.so.2").exists());

    let mut tracer = start_tracer(Vec::new());
    let mut out = Output::default();
    let before = tracer.stats().library_files;
    let ida = id_hex(7);
    let mut apps: Vec<App> = (0..2)
        .map(|r| {
            let code = if r == 0 { "0" } else { "5" };
            App::spawn(&f, &["--ns", src, dst], &mnt, &["rank", &ida, &r.to_string(), "4", "-", "0", "0", code])
        })
        .collect();
    // Found from the exec tracepoint and the maps, before any call.
    let pids: Vec<i32> = apps.iter().map(|a| a.pid).collect();
    poll_until(&mut tracer, &mut out, "exec rows of the namespaced processes", |o| {
        pids.iter().all(|p| o.process_events.iter().any(|e| e.pid == *p && e.kind == "exec"))
    });
    assert_eq!(tracer.stats().library_files, before + 3, "one attach per file for both processes");
    let files = tracer.library_files();
    let nccl = files.iter().find(|l| l.kind == "nccl" && l.path.to_string_lossy().contains(dst)).expect("nccl probed");
    assert!(nccl.path.starts_with("/proc/"), "reached through /proc/<pid>/root: {:?}", nccl.path);
    assert_eq!(nccl.nccl_version.as_deref(), Some("2.21.5"));
    assert_eq!(nccl.probes, 38, "stripped: probes placed from .dynsym alone");

    for app in apps.iter_mut() {
        app.go();
    }
    let logs: Vec<(Vec<String>, ExitStatus)> = apps.into_iter().map(App::finish).collect();
    assert_eq!(logs[1].1.code(), Some(5));
    let want: usize = logs.iter().map(|(l, _)| Logged::parse(l).iter().filter(|x| x.kind == 'C').count()).sum();
    poll_until(&mut tracer, &mut out, "rows and exits", |o| {
        o.nccl_calls.iter().filter(|r| pids.contains(&r.pid)).count() >= want
            && pids.iter().all(|p| o.process_events.iter().any(|e| e.pid == *p && e.kind == "exit"))
    });
    for (pid, (lines, _)) in pids.iter().zip(&logs) {
        check_nccl(&f, *pid, lines, &out.nccl_calls);
        check_cuda(*pid, lines, &out.cuda_sync_calls);
    }
    let exits: Vec<_> =
        pids.iter().map(|p| events_of(&out, *p).last().map(|e| (e.kind.clone(), e.exit_code))).collect();
    assert_eq!(exits, [Some(("exit".into(), Some(0))), Some(("exit".into(), Some(5)))]);

    // The same file through the host path: already probed, no second attach.
    let mut again = App::spawn(&f, &[], &f.libdir, &["initall", "2"]);
    let again_pid = again.pid;
    again.go();
    let (log, _) = again.finish();
    poll_until(&mut tracer, &mut out, "init-all rows", |o| {
        o.nccl_calls.iter().filter(|r| r.pid == again_pid).count() >= 5
    });
    check_nccl(&f, again_pid, &log, &out.nccl_calls);
    assert_eq!(tracer.stats().library_files, before + 3);
    assert_eq!(tracer.stats().nccl.lost, 0);
}

#[test]
fn a_full_ring_buffer_counts_every_lost_record() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = build_fakes(tmp.path(), 22803, "2.28.3", false);
    check_mounts();
    let mut cfg = TracerConfig::new(CLUSTER, NODE);
    cfg.nccl_ring_bytes = 4096; // about 28 records
    cfg.extra_libraries = vec![f.libdir.join("libnccl.so.2")];
    let mut tracer = Tracer::start(cfg).expect("tracer");
    assert_all_parts_up(&tracer);
    assert!(tracer.stats().probes_attached > 0, "extra library probed without any process");

    const CALLS: u64 = 2000;
    let mut app = App::spawn(&f, &[], &f.libdir, &["bench", &CALLS.to_string()]);
    app.go();
    let (_, status) = app.finish(); // no poll meanwhile: the ring overflows
    assert!(status.success());
    let mut out = Output::default();
    // init + CALLS all-reduces + destroy: each read or counted lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tracer.poll(&mut out).expect("poll");
        let s = tracer.stats();
        if s.nccl.events + s.nccl.lost >= CALLS + 2 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = tracer.stats();
    assert!(s.nccl.lost > 0, "a 4 KiB ring cannot hold {CALLS} records: {s:?}");
    assert_eq!(s.nccl.events + s.nccl.lost, CALLS + 2, "every record is either read or counted lost: {s:?}");
    assert_eq!(out.nccl_calls.len() as u64, s.nccl.events);
}

#[test]
fn uprobes_work_with_process_hooks_off() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    check_mounts();
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = build_fakes(tmp.path(), 22803, "2.28.3", false);
    // No exec/exit hooks: what a host gets where none can attach.
    let mut cfg = TracerConfig::new(CLUSTER, NODE);
    cfg.process_hooks = Vec::new();
    cfg.extra_libraries = vec![f.libdir.join("libnccl.so.2")];
    let mut tracer = Tracer::start(cfg).expect("tracer");
    let state = |part| tracer.parts().iter().find(|p| p.part == part).map(|p| p.state);
    assert_eq!((state(Part::Exec), state(Part::Exit)), (Some(PartState::Off), Some(PartState::Off)));
    assert_eq!((state(Part::Nccl), state(Part::CudaSync)), (Some(PartState::Up), Some(PartState::Up)));
    let mut app = App::spawn(&f, &[], &f.libdir, &["initall", "2"]);
    let pid = app.pid;
    app.go();
    let (log, status) = app.finish();
    assert!(status.success());
    let mut out = Output::default();
    poll_until(&mut tracer, &mut out, "init-all rows", |o| o.nccl_calls.iter().filter(|r| r.pid == pid).count() >= 5);
    check_nccl(&f, pid, &log, &out.nccl_calls);
    let kinds: Vec<&str> = events_of(&out, pid).iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.iter().all(|k| *k == "running"), "no exec/exit rows without hooks: {kinds:?}");
}

/// The classic tracepoints alone (as on a kernel whose tp_btf programs do
/// not load): they follow exec/exit where tracefs is mounted; where it is
/// not, exec and exit are down, say why, and the `/proc` scan finds the
/// process so that every call is still captured.
#[test]
fn classic_tracepoints_need_tracefs_and_the_proc_scan_stands_in() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    check_mounts();
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = build_fakes(tmp.path(), 22803, "2.28.3", false);
    let mut cfg = TracerConfig::new(CLUSTER, NODE);
    cfg.process_hooks = vec![ProcessHook::Tracepoint];
    cfg.rescan_period = Duration::from_millis(200);
    let mut tracer = Tracer::start(cfg).expect("tracer");
    let part = |part| tracer.parts().iter().find(|p| p.part == part).cloned().expect("part");
    let mounted = tracefs_mounted();
    for p in [part(Part::Exec), part(Part::Exit)] {
        if mounted {
            assert_eq!(p.state, PartState::Up, "{p:?}");
            assert!(p.detail.starts_with("tracepoint sched/"), "{p:?}");
        } else {
            assert_eq!(p.state, PartState::Down, "{p:?}");
            assert!(p.detail.contains("tracefs is not mounted"), "the reason is named: {p:?}");
        }
    }
    assert!(part(Part::Nccl).is_up() && part(Part::CudaSync).is_up() && part(Part::ProcScan).is_up());
    let errors = tracer.stats().part_errors;
    if mounted {
        assert!(errors.is_empty(), "{errors:?}");
    } else {
        assert_eq!((errors.get("exec"), errors.get("exit")), (Some(&1), Some(&1)), "one error each, at start");
    }

    let ida = id_hex(4);
    let mut app = App::spawn(&f, &[], &f.libdir, &["rank", &ida, "1", "2", "-", "0", "0", "0"]);
    let pid = app.pid;
    let mut out = Output::default();
    // Its libraries are mapped now ("ready"): found by the exec hook, or by the next rescan.
    let first = if mounted { "exec" } else { "running" };
    poll_until(&mut tracer, &mut out, "the process found", |o| {
        o.process_events.iter().any(|e| e.pid == pid && e.kind == first)
    });
    app.go();
    let (log, status) = app.finish();
    assert!(status.success());
    let want = Logged::parse(&log).iter().filter(|l| l.kind == 'C').count();
    poll_until(&mut tracer, &mut out, "every row", |o| {
        o.nccl_calls.iter().filter(|r| r.pid == pid).count() >= want
            && (!mounted || o.process_events.iter().any(|e| e.pid == pid && e.kind == "exit"))
    });
    check_nccl(&f, pid, &log, &out.nccl_calls);
    check_cuda(pid, &log, &out.cuda_sync_calls);
    let kinds: Vec<&str> = events_of(&out, pid).iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, if mounted { vec!["exec", "exit"] } else { vec!["running"] });
}

/// The scenarios above, run again by this binary in a private mount namespace.
const SCENARIOS: [&str; 5] = [
    "captures_every_call_of_known_processes",
    "stripped_library_in_a_private_mount_is_found_after_exec",
    "a_full_ring_buffer_counts_every_lost_record",
    "uprobes_work_with_process_hooks_off",
    "classic_tracepoints_need_tracefs_and_the_proc_scan_stands_in",
];

/// Runs [`SCENARIOS`] in a child of this test binary that first enters a
/// private mount namespace (its mounts do not reach the host) and then
/// mounts tracefs (`with_tracefs`) or unmounts tracefs and debugfs.
fn run_in_mount_namespace(with_tracefs: bool) {
    use std::os::unix::process::CommandExt;
    require_root();
    if std::env::var_os(MOUNTS_ENV).is_some() {
        return; // already inside one
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", "--test-threads=1"]).args(SCENARIOS);
    cmd.env(MOUNTS_ENV, if with_tracefs { "tracefs" } else { "none" });
    // SAFETY: only system calls between fork and exec; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let c = |s: &[u8]| s.as_ptr().cast::<libc::c_char>();
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c(b"/\0"),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if with_tracefs {
                if libc::mount(c(b"nodev\0"), c(b"/sys/kernel/tracing\0"), c(b"tracefs\0"), 0, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else {
                // Stacked mounts come off one at a time; EINVAL: nothing (more) mounted there.
                for path in [&b"/sys/kernel/debug/tracing\0"[..], b"/sys/kernel/tracing\0", b"/sys/kernel/debug\0"] {
                    while libc::umount2(c(path), libc::MNT_DETACH) == 0 {}
                }
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("running the test binary again");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scenarios failed in the namespace:\n{text}");
    for name in SCENARIOS {
        assert!(text.contains(&format!("test {name} ... ok")), "{name} did not run:\n{text}");
    }
}

#[test]
fn in_a_mount_namespace_with_tracefs() {
    run_in_mount_namespace(true);
}

#[test]
fn in_a_mount_namespace_without_tracefs_or_debugfs() {
    run_in_mount_namespace(false);
}
