//! The built library (`libstrand_inject.so`) loaded into a child process the
//! way the CUDA driver loads it, with a fake libcupti (tests/fake_cupti) as
//! the only stand-in: `InitializeInjection`, version detection, callback
//! registration order, buffer delivery with the real record layouts, the
//! socket protocol, drop reporting, flush at exit, fork, and every way the
//! library must turn itself off without harming the process.
//!
//! Each scenario runs `child` (ignored when run directly) in a fresh process.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strand_inject::convert::SyntheticBuffer;
use strand_inject::layout::{self, *};
use strand_inject::sock;
use strand_inject::wire::{self, Activity, Connection};

const GEMM: &CStr = c"_Z19sm90_xmma_gemm_bf16PKvS0_Pv";
const NCCL: &CStr = c"ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)";
const GPU: &CStr = c"NVIDIA H100 80GB HBM3";
const UUID: [u8; 16] = *b"\x9a\x1b\x2c\x3d\x4e\x5f\x60\x71\x82\x93\xa4\xb5\xc6\xd7\xe8\xf9";
const VERSIONS: [u32; 8] = [18, 24, 26, 130001, 130101, 130202, 130301, 130401];

// ------------------------------------------------------------------ child

macro_rules! kernel {
    ($t:ident, $corr:expr, $name:expr) => {
        $t {
            kind: kind::CONCURRENT_KERNEL,
            start: 1_000_000 + $corr as u64,
            end: 2_000_000 + $corr as u64,
            device_id: 0,
            context_id: 1,
            stream_id: 7,
            grid_x: 64,
            grid_y: 1,
            grid_z: 1,
            block_x: 256,
            block_y: 1,
            block_z: 1,
            correlation_id: $corr,
            name: $name.as_ptr() as u64,
            ..Default::default()
        }
    };
}

macro_rules! records {
    ($k:ident, $mc:ident, $ms:ident, $dev:ident, $sync:expr) => {{
        let mut b = SyntheticBuffer::default();
        b.push(&$dev { kind: kind::DEVICE, id: 0, uuid: Uuid(UUID), name: GPU.as_ptr() as u64, ..Default::default() })
            .push(&Api {
                kind: kind::RUNTIME,
                cbid: 211,
                start: 900_000,
                end: 950_000,
                process_id: 1,
                thread_id: 77,
                correlation_id: 40,
                return_value: 0,
            })
            .push(&kernel!($k, 40, GEMM))
            .push(&Api {
                kind: kind::DRIVER,
                cbid: 307,
                start: 960_000,
                end: 970_000,
                process_id: 1,
                thread_id: 78,
                correlation_id: 41,
                return_value: 0,
            })
            .push(&kernel!($k, 41, NCCL))
            .push(&$mc {
                kind: kind::MEMCPY,
                copy_kind: 1,
                src_kind: 1,
                dst_kind: 3,
                bytes: 1 << 20,
                start: 3_000_000,
                end: 3_100_000,
                correlation_id: 42,
                ..Default::default()
            })
            .push(&$ms {
                kind: kind::MEMSET,
                bytes: 4096,
                start: 4_000_000,
                end: 4_000_500,
                correlation_id: 43,
                memory_kind: 3,
                ..Default::default()
            });
        $sync(&mut b);
        b
    }};
}

fn buffer_for(version: u32) -> SyntheticBuffer {
    let sync1 = |b: &mut SyntheticBuffer| {
        b.push(&Synchronization {
            kind: kind::SYNCHRONIZATION,
            sync_type: 3,
            start: 5_000_000,
            end: 5_400_000,
            correlation_id: 44,
            ..Default::default()
        });
    };
    let sync2 = |b: &mut SyntheticBuffer| {
        b.push(&Synchronization2 {
            kind: kind::SYNCHRONIZATION,
            sync_type: 3,
            start: 5_000_000,
            end: 5_400_000,
            correlation_id: 44,
            return_value: 0,
            ..Default::default()
        });
    };
    match layout::for_version(version).map(|l| l.release) {
        Some("12.0–12.1") => records!(Kernel9, Memcpy5, Memset4, Device4, sync1),
        Some("12.2–12.6") => records!(Kernel9, Memcpy5, Memset4, Device5, sync1),
        Some("12.8–12.9") => records!(Kernel9, Memcpy6V12, Memset4, Device5, sync2),
        Some("13.0") => records!(Kernel10, Memcpy6, Memset4, Device5, sync2),
        Some("13.1") => records!(Kernel11, Memcpy6, Memset4, Device5, sync2),
        Some("13.2") => records!(Kernel11, Memcpy6, Memset4, Device6, sync2),
        Some("13.3") => records!(Kernel12, Memcpy6, Memset4, Device6, sync2),
        Some("13.4") => records!(Kernel13, Memcpy7, Memset5, Device6, sync2),
        _ => records!(Kernel9, Memcpy5, Memset4, Device5, sync1),
    }
}

/// The fake's log function, and the pid of the child before any fork.
static FAKE_LOG: AtomicUsize = AtomicUsize::new(0);
static FIRST_PID: AtomicU32 = AtomicU32::new(0);

/// Registered before `InitializeInjection`, so it runs after the library's
/// own at-exit flush: prints what the fake saw (`FORKED-LOG` in a fork child).
extern "C" fn print_log() {
    let f = FAKE_LOG.load(Ordering::SeqCst);
    if f == 0 {
        return;
    }
    // SAFETY: the stored address is the fake's `fake_cupti_log`.
    let f: unsafe extern "C" fn() -> *const c_char = unsafe { std::mem::transmute(f) };
    let tag = if std::process::id() == FIRST_PID.load(Ordering::SeqCst) { "FAKE-LOG" } else { "FORKED-LOG" };
    // SAFETY: the fake returns its NUL-terminated log buffer.
    println!("{tag}: {}", unsafe { CStr::from_ptr(f()) }.to_string_lossy());
}

fn dl(path: &CStr, flags: c_int) -> *mut c_void {
    // SAFETY: dlopen with a valid C string.
    unsafe { libc::dlopen(path.as_ptr(), flags) }
}

fn sym(h: *mut c_void, name: &CStr) -> *mut c_void {
    // SAFETY: dlsym on a valid handle.
    let p = unsafe { libc::dlsym(h, name.as_ptr()) };
    assert!(!p.is_null(), "{name:?} missing");
    p
}

#[test]
#[ignore = "helper run in a child process by the tests below"]
fn child() {
    let Some(so) = std::env::var_os("STRAND_TEST_INJECT_SO") else { return };
    FIRST_PID.store(std::process::id(), Ordering::SeqCst);
    let so = std::ffi::CString::new(so.into_encoded_bytes()).unwrap();
    let lib = dl(&so, libc::RTLD_NOW | libc::RTLD_LOCAL);
    assert!(!lib.is_null(), "cannot load the library");
    // SAFETY: the exported entry point has this C signature.
    let init: extern "C" fn() -> c_int = unsafe { std::mem::transmute(sym(lib, c"InitializeInjection")) };
    // SAFETY: registering a plain extern "C" fn.
    unsafe { libc::atexit(print_log) };
    assert_eq!(init(), 1);
    assert_eq!(init(), 1, "a second call is harmless");
    let fake = dl(c"libcupti.so", libc::RTLD_NOW | libc::RTLD_NOLOAD);
    println!("CUPTI-LOADED: {}", !fake.is_null());
    if fake.is_null() {
        std::process::exit(0);
    }
    FAKE_LOG.store(sym(fake, c"fake_cupti_log") as usize, Ordering::SeqCst);
    let deliver: unsafe extern "C" fn(*const u8, usize, *const usize, usize, usize) -> c_int =
        // SAFETY: as above.
        unsafe { std::mem::transmute(sym(fake, c"fake_cupti_deliver")) };
    // SAFETY: as above.
    let now: unsafe extern "C" fn() -> u64 = unsafe { std::mem::transmute(sym(fake, c"fake_cupti_now")) };
    let version = std::env::var("FAKE_CUPTI_VERSION").unwrap().parse().unwrap();
    let buf = buffer_for(version);
    // SAFETY: pointers valid for the call.
    let r = unsafe { deliver(buf.bytes.as_ptr(), buf.bytes.len(), buf.offsets.as_ptr(), buf.offsets.len(), 3) };
    println!("DELIVERED: {r}");
    // SAFETY: plain call into the fake.
    println!("CLOCKS: {} {}", unsafe { now() }, strand_schemas_free_monotonic());
    if std::env::var("FAKE_FORK").is_ok() {
        // SAFETY: fork in a test process; the child only calls into the fake and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // In the child CUPTI would not run, but if it did the library must stay quiet.
            // SAFETY: as above.
            unsafe { deliver(buf.bytes.as_ptr(), buf.bytes.len(), buf.offsets.as_ptr(), buf.offsets.len(), 0) };
            // SAFETY: exit runs the at-exit handlers, which must not send.
            unsafe { libc::exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        println!("FORK-CHILD: {pid} {status}");
    }
    std::process::exit(0);
}

fn strand_schemas_free_monotonic() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ------------------------------------------------------------------ parent

/// The library as the driver would load it: next to this test binary.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    [dir.join("libstrand_inject.so"), dir.join("../libstrand_inject.so")]
        .into_iter()
        .find(|p| p.exists())
        .expect("libstrand_inject.so next to the test binary (cargo builds it with the tests)")
}

/// Compiles the fake into `dir/libcupti.so` (the first name cudarc looks for).
fn fake_cupti(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_cupti/fake_cupti.c");
    let out = dir.join("libcupti.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc).args(["-shared", "-fPIC", "-O1", "-o"]).arg(&out).arg(&src).arg("-lpthread").status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "compiling the fake CUPTI with {cc} failed (a C compiler is needed, as for linking Rust)"
    );
    out
}

struct Run {
    out: Output,
    frames: Vec<wire::Frame>,
    conn: Connection,
    connections: usize,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn log(&self) -> String {
        self.stdout().lines().find_map(|l| l.strip_prefix("FAKE-LOG: ")).unwrap_or_default().to_string()
    }
    fn activities(&self) -> Vec<Activity> {
        self.frames.iter().flat_map(|f| f.activities.iter().copied()).collect()
    }
}

/// Runs the child with `env`, receiving on `socket` (when given) until it exits.
fn run(lib_dir: Option<&Path>, socket: &Path, listen: bool, env: &[(&str, &str)]) -> Run {
    let _ = std::fs::remove_file(socket);
    let listener: Option<OwnedFd> = listen.then(|| sock::listen(socket, 16).unwrap());
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("STRAND_TEST_INJECT_SO", library())
        .env("STRAND_CUPTI_SOCKET", socket)
        .env("STRAND_INJECT_LOG", "info")
        .env("STRAND_CUPTI_EXIT_TIMEOUT_MS", "3000")
        .env_remove("STRAND_CUPTI_LIB")
        .env_remove("STRAND_CUPTI_DISABLE")
        .env("LD_LIBRARY_PATH", lib_dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let (mut frames, mut conn, mut connections) = (Vec::new(), Connection::new(), 0);
    let mut clients: Vec<OwnedFd> = Vec::new();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let mut buf = vec![0u8; wire::MAX_FRAME];
    let mut done = false;
    while !done {
        done = waiter.is_finished();
        if let Some(l) = &listener {
            while let Ok(c) = sock::accept(l.as_raw_fd()) {
                connections += 1;
                clients.push(c);
            }
        }
        for c in &clients {
            while let Ok(sock::Received::Message(n)) = sock::recv(c.as_raw_fd(), &mut buf) {
                frames.push(conn.decode(&buf[..n]).expect("frames from the library decode"));
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "child hangs");
        std::thread::sleep(Duration::from_millis(5));
    }
    Run { out: waiter.join().unwrap(), frames, conn, connections }
}

#[test]
fn the_library_streams_every_record_kind_for_every_supported_cupti() {
    let dir = tempfile::tempdir().unwrap();
    fake_cupti(dir.path());
    for version in VERSIONS {
        let socket = dir.path().join(format!("agent-{version}.sock"));
        let r = run(Some(dir.path()), &socket, true, &[("FAKE_CUPTI_VERSION", &version.to_string())]);
        let ctx = format!("CUPTI {version}\nstdout: {}\nstderr: {}", r.stdout(), r.stderr());
        assert!(r.out.status.success(), "{ctx}");
        assert!(r.stdout().contains("CUPTI-LOADED: true") && r.stdout().contains("DELIVERED: 0"), "{ctx}");
        let release = layout::for_version(version).unwrap().release;
        assert!(r.stderr().contains(&format!("layouts of CUDA {release}")), "{ctx}");

        // The CUPTI calls, in order: clock before any enable; thread ids; API records for traced functions only.
        let log = r.log();
        let pos = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s:?} not in the fake's log: {log}"));
        assert!(pos("timestamp") < pos("callbacks") && pos("callbacks") < pos("enable:10"), "{log}");
        assert!(!log.contains("before-timestamp"), "{log}");
        for call in [
            "tid-type:1",
            "enable:1 ",
            "enable:2 ",
            "enable:38 ",
            "dump:8 ",
            "runtime-api:211",
            "runtime-api:131",
            "driver-api:307",
            "flush-forced",
        ] {
            pos(call);
        }
        assert!(
            !log.contains("runtime-api:1 ") && !log.contains("driver-api:5 "),
            "untraced API functions stay off: {log}"
        );

        // CUPTI's clock is CLOCK_MONOTONIC.
        let clocks: Vec<u64> = r
            .stdout()
            .lines()
            .find_map(|l| l.strip_prefix("CLOCKS: "))
            .unwrap()
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(clocks[0] > 0 && clocks[0] <= clocks[1] && clocks[1] - clocks[0] < 1_000_000_000, "{clocks:?}");

        // What arrived: every record, names once, the child's pid and version, CUPTI's drops.
        assert_eq!(r.connections, 1, "{ctx}");
        let acts = r.activities();
        assert_eq!(acts.len(), 8, "{acts:?}");
        let child_pid = r.frames[0].header.pid;
        assert!(r.frames.iter().all(|f| f.header.pid == child_pid && f.header.cupti_version == version));
        let last = r.frames.last().unwrap().header;
        assert_eq!((last.cupti_dropped, last.dropped), (3, 0), "{ctx}");
        let name = |id: u32| r.conn.name(id).map(|n| n.to_string()).unwrap_or_default();
        let mut kernels = Vec::new();
        for a in &acts {
            match a {
                Activity::Kernel(k) => {
                    assert_eq!(
                        (k.device_id, k.context_id, k.stream_id, k.grid, k.block),
                        (0, 1, 7, [64, 1, 1], [256, 1, 1])
                    );
                    assert_eq!(
                        (k.start, k.end),
                        (1_000_000 + k.correlation_id as u64, 2_000_000 + k.correlation_id as u64)
                    );
                    kernels.push((k.correlation_id, name(k.name)));
                }
                Activity::Device(d) => {
                    assert_eq!((d.id, d.uuid, name(d.name).as_str()), (0, UUID, "NVIDIA H100 80GB HBM3"))
                }
                Activity::Api(a) if a.correlation_id == 40 => {
                    assert_eq!(
                        (a.domain, a.cbid, a.thread_id, name(a.name).as_str()),
                        (wire::domain::RUNTIME, 211, 77, "cudaLaunchKernel_v7000")
                    )
                }
                Activity::Api(a) => {
                    assert_eq!(
                        (a.domain, a.cbid, a.thread_id, name(a.name).as_str()),
                        (wire::domain::DRIVER, 307, 78, "cuLaunchKernel")
                    )
                }
                Activity::Memcpy(m) => {
                    assert_eq!(
                        (m.bytes, m.copy_kind, m.start, m.end, m.correlation_id),
                        (1 << 20, 1, 3_000_000, 3_100_000, 42)
                    )
                }
                Activity::Memset(m) => assert_eq!((m.bytes, m.memory_kind, m.correlation_id), (4096, 3, 43)),
                Activity::Sync(s) => {
                    assert_eq!((s.sync_type, s.start, s.end, s.correlation_id), (3, 5_000_000, 5_400_000, 44));
                    assert_eq!(s.ret, layout::for_version(version).unwrap().sync.return_value.map(|_| 0));
                }
            }
        }
        assert_eq!(kernels, [(40, GEMM.to_str().unwrap().to_string()), (41, NCCL.to_str().unwrap().to_string())]);
    }
}

#[test]
fn anything_missing_or_unknown_turns_the_library_off_quietly() {
    let dir = tempfile::tempdir().unwrap();
    fake_cupti(dir.path());
    let socket = dir.path().join("agent.sock");

    // A CUPTI release whose layouts the library does not know.
    let r = run(Some(dir.path()), &socket, true, &[("FAKE_CUPTI_VERSION", "140001")]);
    assert!(r.out.status.success());
    assert!(
        r.stderr().contains("CUPTI API version 140001 is not supported") && r.stderr().contains("13.0–13.4"),
        "{}",
        r.stderr()
    );
    assert_eq!(r.stderr().matches("strand-inject[").count(), 1, "one line: {}", r.stderr());
    assert!(!r.log().contains("callbacks") && !r.log().contains("enable"), "nothing registered: {}", r.log());
    assert_eq!(r.connections, 0);

    // Switched off by the user.
    let r = run(Some(dir.path()), &socket, true, &[("FAKE_CUPTI_VERSION", "24"), ("STRAND_CUPTI_DISABLE", "1")]);
    assert!(r.out.status.success() && r.stderr().contains("disabled by STRAND_CUPTI_DISABLE=1"));
    assert!(r.stdout().contains("CUPTI-LOADED: false"));

    // A STRAND_CUPTI_LIB that does not load.
    let r = run(
        Some(dir.path()),
        &socket,
        true,
        &[("FAKE_CUPTI_VERSION", "24"), ("STRAND_CUPTI_LIB", "/nonexistent/libcupti.so.12")],
    );
    assert!(
        r.out.status.success() && r.stderr().contains("STRAND_CUPTI_LIB /nonexistent/libcupti.so.12"),
        "{}",
        r.stderr()
    );

    // No libcupti at all (only checkable where the system has none).
    // SAFETY: probes library names with dlopen.
    if !unsafe { cudarc::cupti::sys::is_culib_present() } {
        let empty = tempfile::tempdir().unwrap();
        let r = run(Some(empty.path()), &socket, true, &[]);
        assert!(r.out.status.success() && r.stderr().contains("libcupti not found"), "{}", r.stderr());
    }

    // A failing CUPTI call: without kernel records the library is off; without memset records it runs on.
    let r = run(Some(dir.path()), &socket, true, &[("FAKE_CUPTI_VERSION", "24"), ("FAKE_CUPTI_FAIL_ENABLE", "10")]);
    assert!(r.out.status.success(), "{}", r.stderr());
    assert!(
        r.stderr().contains("inactive")
            && r.stderr().contains("cuptiActivityEnable(CONCURRENT_KERNEL) failed: fake CUPTI error (1)"),
        "{}",
        r.stderr()
    );
    assert!(!r.log().contains("flush-forced"), "no at-exit work when off: {}", r.log());
    let r = run(Some(dir.path()), &socket, true, &[("FAKE_CUPTI_VERSION", "24"), ("FAKE_CUPTI_FAIL_ENABLE", "2")]);
    assert!(
        r.out.status.success() && r.stderr().contains("some activity kinds are off: MEMSET failed"),
        "{}",
        r.stderr()
    );
    assert_eq!(r.activities().len(), 8, "the rest still flows");

    // No agent: the process runs and exits normally, without waiting long.
    let t = Instant::now();
    let r = run(Some(dir.path()), &dir.path().join("nobody.sock"), false, &[("FAKE_CUPTI_VERSION", "24")]);
    assert!(r.out.status.success() && r.stdout().contains("DELIVERED: 0"), "{}", r.stderr());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn a_forked_child_sends_nothing_and_does_not_disturb_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    fake_cupti(dir.path());
    let socket = dir.path().join("agent.sock");
    let r = run(Some(dir.path()), &socket, true, &[("FAKE_CUPTI_VERSION", "24"), ("FAKE_FORK", "1")]);
    assert!(r.out.status.success(), "{}", r.stderr());
    let fork_line = r.stdout().lines().find_map(|l| l.strip_prefix("FORK-CHILD: ")).unwrap().to_string();
    assert!(fork_line.ends_with(" 0"), "the forked child exited cleanly: {fork_line}");
    // One connection, from the parent, with exactly the parent's records.
    assert_eq!(r.connections, 1);
    let pids: std::collections::HashSet<u32> = r.frames.iter().map(|f| f.header.pid).collect();
    assert_eq!(pids.len(), 1);
    assert_eq!(r.activities().len(), 8);
    assert_eq!(r.log().matches("flush-forced").count(), 1, "the parent flushes at exit: {}", r.log());
    let forked = r
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("FORKED-LOG: "))
        .map(str::to_string)
        .expect("the forked child printed its log");
    assert!(!forked.contains("flush-forced"), "the forked child's exit does not flush: {forked}");
}
