//! The CUDA-facing half: `InitializeInjection` and the CUPTI callbacks.
//!
//! The CUDA driver loads this library when `CUDA_INJECTION64_PATH` names it
//! and calls `InitializeInjection` from `cuInit`. Rules kept here:
//! - no panic crosses the FFI boundary (every entry point is wrapped in
//!   `catch_unwind`), and nothing here exits or aborts the process;
//! - anything missing or failing (no libcupti, an unknown CUPTI version, a
//!   failed CUPTI call) is logged once and leaves the library a no-op;
//! - the workload never waits on the agent (see [`crate::sender`]);
//! - after `fork()` the child does nothing: CUDA cannot be used in a child
//!   of a process that initialised it, and the child must not write into
//!   the parent's connection;
//! - at exit, CUPTI's buffers are flushed and the queue sent (bounded wait).
//!
//! CUPTI is loaded through `cudarc`'s loader (`is_culib_present` first, as
//! `culib()` panics when the library is absent). Functions are then resolved
//! from that library as typed pointers returning `u32`, rather than through
//! `cudarc`'s wrappers: those panic on a missing symbol (several we use are
//! newer than CUDA 12.0) and return a Rust enum, which a result code newer
//! than the bindings would make undefined behaviour.

use std::collections::HashSet;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use crate::convert::{Converter, Resolve};
use crate::layout::{self, kind};
use crate::sender::{Batch, Sender, SenderConfig};
use crate::wire::{self, MAX_NAME_LEN};

/// Where the agent listens unless `STRAND_CUPTI_SOCKET` says otherwise (the
/// packaged agent configuration, systemd/agent.toml: the unit's RuntimeDirectory).
pub const DEFAULT_SOCKET: &str = "/run/strand/cupti.sock";

/// Size of each activity buffer handed to CUPTI.
const BUFFER_SIZE: usize = 1 << 20;
/// Most buffers CUPTI may hold at once (64 MiB); beyond it CUPTI drops records and counts them.
const MAX_BUFFERS: usize = 64;
/// Records per batch handed to the sender.
const BATCH: usize = 8192;

const CUPTI_SUCCESS: u32 = 0;
const THREAD_ID_TYPE_SYSTEM: u32 = 1;
const FLUSH_FORCED: u32 = 1;

type RequestFn = unsafe extern "C" fn(*mut *mut u8, *mut usize, *mut usize);
type CompleteFn = unsafe extern "C" fn(*mut c_void, u32, *mut u8, usize, usize);

/// The CUPTI functions used, resolved from the loaded library.
#[derive(Clone, Copy)]
struct Cupti {
    get_version: unsafe extern "C" fn(*mut u32) -> u32,
    register_callbacks: unsafe extern "C" fn(RequestFn, CompleteFn) -> u32,
    register_timestamp: unsafe extern "C" fn(extern "C" fn() -> u64) -> u32,
    enable: unsafe extern "C" fn(u32) -> u32,
    enable_and_dump: Option<unsafe extern "C" fn(u32) -> u32>,
    flush_all: unsafe extern "C" fn(u32) -> u32,
    next_record: unsafe extern "C" fn(*mut u8, usize, *mut *mut c_void) -> u32,
    dropped_records: unsafe extern "C" fn(*mut c_void, u32, *mut usize) -> u32,
    result_string: Option<unsafe extern "C" fn(u32, *mut *const c_char) -> u32>,
    set_thread_id_type: Option<unsafe extern "C" fn(u32) -> u32>,
    callback_name: Option<unsafe extern "C" fn(u32, u32, *mut *const c_char) -> u32>,
    enable_driver_api: Option<unsafe extern "C" fn(u32, u8) -> u32>,
    enable_runtime_api: Option<unsafe extern "C" fn(u32, u8) -> u32>,
}

impl Cupti {
    /// Resolves the functions; `Err` names the first required one missing.
    fn load() -> Result<Cupti, String> {
        // SAFETY: only called after `is_culib_present()` returned true.
        let lib = unsafe { cudarc::cupti::sys::culib() };
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the type matches the C prototype in cupti_activity.h /
                // cupti_callbacks.h (CUptiResult is a 32-bit C enum).
                unsafe { lib.get(concat!($name, "\0").as_bytes()) }.ok().map(|s| *s)
            };
        }
        macro_rules! need {
            ($name:literal) => {
                sym!($name).ok_or_else(|| format!("libcupti has no {}", $name))?
            };
        }
        Ok(Cupti {
            get_version: need!("cuptiGetVersion"),
            register_callbacks: need!("cuptiActivityRegisterCallbacks"),
            register_timestamp: need!("cuptiActivityRegisterTimestampCallback"),
            enable: need!("cuptiActivityEnable"),
            enable_and_dump: sym!("cuptiActivityEnableAndDump"),
            flush_all: need!("cuptiActivityFlushAll"),
            next_record: need!("cuptiActivityGetNextRecord"),
            dropped_records: need!("cuptiActivityGetNumDroppedRecords"),
            result_string: sym!("cuptiGetResultString"),
            set_thread_id_type: sym!("cuptiSetThreadIdType"),
            callback_name: sym!("cuptiGetCallbackName"),
            enable_driver_api: sym!("cuptiActivityEnableDriverApi"),
            enable_runtime_api: sym!("cuptiActivityEnableRuntimeApi"),
        })
    }

    /// `Err` with "call: CUPTI's message (code)" unless `r` is success.
    fn check(&self, r: u32, call: &str) -> Result<(), String> {
        if r == CUPTI_SUCCESS {
            return Ok(());
        }
        let mut msg: *const c_char = std::ptr::null();
        let text = match self.result_string {
            // SAFETY: valid out-pointer; CUPTI returns a static string.
            Some(f) if unsafe { f(r, &mut msg) } == CUPTI_SUCCESS && !msg.is_null() => {
                // SAFETY: non-null NUL-terminated static string from CUPTI.
                unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
            }
            _ => "unknown error".into(),
        };
        Err(format!("{call} failed: {text} ({r})"))
    }
}

/// Everything the callbacks need, set once by `InitializeInjection`.
struct Active {
    cupti: Cupti,
    converter: Mutex<Converter>,
    sender: Sender,
    pid: u32,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();
static INIT: Once = Once::new();
/// Set in a `fork()` child: the library does nothing there.
static FORKED: AtomicBool = AtomicBool::new(false);
/// Buffers CUPTI holds.
static BUFFERS_OUT: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------- logging

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Level {
    Off,
    Error,
    Info,
}

fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("STRAND_INJECT_LOG").as_deref() {
        Ok("off") | Ok("0") => Level::Off,
        Ok("info") | Ok("debug") => Level::Info,
        _ => Level::Error,
    })
}

/// One line on stderr, at most once per `key`.
fn log_once(at: Level, key: &'static str, msg: impl std::fmt::Display) {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    if level() < at {
        return;
    }
    if let Ok(mut seen) = SEEN.lock()
        && !seen.get_or_insert_with(HashSet::new).insert(key)
    {
        return;
    }
    // Not eprintln!: it panics when stderr is closed, and this runs inside the workload.
    let _ = writeln!(std::io::stderr(), "strand-inject[{}]: {msg}", std::process::id());
}

// ---------------------------------------------------------------- entry point

/// Called by the CUDA driver from `cuInit`. Always returns 1: a profiler that
/// cannot start must not make CUDA initialisation fail.
#[unsafe(no_mangle)]
pub extern "C" fn InitializeInjection() -> c_int {
    let _ = catch_unwind(|| {
        INIT.call_once(|| match start() {
            Ok(msg) => log_once(Level::Info, "active", msg),
            Err(e) => log_once(Level::Error, "inactive", format_args!("inactive, the workload runs unprofiled: {e}")),
        })
    });
    1
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn start() -> Result<String, String> {
    if std::env::var("STRAND_CUPTI_DISABLE").is_ok_and(|v| v == "1") {
        return Err("disabled by STRAND_CUPTI_DISABLE=1".into());
    }
    let socket = env_path("STRAND_CUPTI_SOCKET").unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    if let Some(lib) = env_path("STRAND_CUPTI_LIB") {
        preload(&lib)?;
    }
    // SAFETY: only probes candidate library names with dlopen.
    if !unsafe { cudarc::cupti::sys::is_culib_present() } {
        return Err(
            "libcupti not found on the library path (cudarc's names: libcupti.so, libcupti.so.13, libcupti.so.12, …); \
             set STRAND_CUPTI_LIB to its full path or add its directory to LD_LIBRARY_PATH"
                .into(),
        );
    }
    let cupti = Cupti::load()?;
    let mut version = 0u32;
    // SAFETY: valid out-pointer.
    cupti.check(unsafe { (cupti.get_version)(&mut version) }, "cuptiGetVersion")?;
    let layout = layout::for_version(version)
        .ok_or_else(|| format!("CUPTI API version {version} is not supported; supported: {}", layout::SUPPORTED))?;

    // The clock first: records made before it would carry CUPTI's own clock.
    // SAFETY: `monotonic_ns` is a valid callback for the process lifetime.
    cupti.check(unsafe { (cupti.register_timestamp)(monotonic_ns) }, "cuptiActivityRegisterTimestampCallback")?;
    // SAFETY: both callbacks are valid for the process lifetime.
    cupti.check(
        unsafe { (cupti.register_callbacks)(buffer_requested, buffer_completed) },
        "cuptiActivityRegisterCallbacks",
    )?;
    // System thread ids (gettid) join eBPF's; without them API records would mislead.
    let system_tids = match cupti.set_thread_id_type {
        // SAFETY: plain call with an enum value.
        Some(f) => cupti.check(unsafe { f(THREAD_ID_TYPE_SYSTEM) }, "cuptiSetThreadIdType").is_ok(),
        None => false,
    };

    let pid = std::process::id();
    let mut cfg = SenderConfig::new(socket.clone(), pid, version);
    if let Some(n) = std::env::var("STRAND_CUPTI_QUEUE_RECORDS").ok().and_then(|v| v.parse().ok()) {
        cfg.queue_records = n;
    }
    let tick = Box::new(move || {
        if !FORKED.load(Ordering::Relaxed) {
            // Hands over completed buffers, full or not, about once a second.
            // SAFETY: CUPTI documents a periodic default flush from a separate thread.
            unsafe { (cupti.flush_all)(0) };
        }
    });
    let sender = Sender::start(cfg, Some(tick)).map_err(|e| format!("cannot start the sender thread: {e}"))?;
    if ACTIVE.set(Active { cupti, converter: Mutex::new(Converter::new(layout)), sender, pid }).is_err() {
        return Err("initialised twice".into());
    }

    // SAFETY: plain enable calls with activity kind values.
    if let Err(e) =
        cupti.check(unsafe { (cupti.enable)(kind::CONCURRENT_KERNEL) }, "cuptiActivityEnable(CONCURRENT_KERNEL)")
    {
        // Without kernel records there is nothing to do: stop the sender thread too.
        if let Some(a) = ACTIVE.get() {
            a.sender.shutdown(Duration::ZERO);
        }
        return Err(e);
    }
    let mut missing = Vec::new();
    for (k, name) in [(kind::MEMCPY, "MEMCPY"), (kind::MEMSET, "MEMSET"), (kind::SYNCHRONIZATION, "SYNCHRONIZATION")] {
        // SAFETY: as above.
        if let Err(e) = cupti.check(unsafe { (cupti.enable)(k) }, name) {
            missing.push(e);
        }
    }
    // Device records carry the UUIDs; "and dump" also returns devices CUDA already knows.
    let dev = cupti.enable_and_dump.unwrap_or(cupti.enable);
    // SAFETY: as above.
    if let Err(e) = cupti.check(unsafe { dev(kind::DEVICE) }, "DEVICE") {
        missing.push(e);
    }
    let api = if !system_tids {
        "no API records (cuptiSetThreadIdType unavailable)".to_string()
    } else if std::env::var("STRAND_CUPTI_API").is_ok_and(|v| v == "0") {
        "no API records (STRAND_CUPTI_API=0)".to_string()
    } else {
        enable_api_records(&cupti)
    };
    if !missing.is_empty() {
        log_once(Level::Error, "partial", format_args!("some activity kinds are off: {}", missing.join("; ")));
    }
    // SAFETY: registering plain extern "C" handlers.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(None, None, Some(atfork_child));
    }
    Ok(format!(
        "CUPTI {version} (layouts of CUDA {}) from {}, {api}, sending to {}",
        layout.release,
        loaded_from(&cupti),
        socket.display()
    ))
}

/// Loads `path` first, so that cudarc's search by soname finds this copy.
fn preload(path: &std::path::Path) -> Result<(), String> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("STRAND_CUPTI_LIB {} contains a NUL", path.display()))?;
    // SAFETY: dlopen of a caller-named library; the handle is kept for the process lifetime.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a thread-local string or null.
        let why = unsafe { libc::dlerror() };
        let why = if why.is_null() {
            "unknown".into()
        } else {
            unsafe { CStr::from_ptr(why) }.to_string_lossy().into_owned()
        };
        return Err(format!("STRAND_CUPTI_LIB {}: {why}", path.display()));
    }
    Ok(())
}

/// Path of the libcupti in use, for the start-up line.
fn loaded_from(c: &Cupti) -> String {
    // SAFETY: Dl_info is plain data; dladdr fills it for an address in a loaded object.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    if unsafe { libc::dladdr(c.get_version as *const c_void, &mut info) } != 0 && !info.dli_fname.is_null() {
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
        return unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    }
    "libcupti".into()
}

/// API functions whose records are kept: launches, copies, sets (the
/// launching call of every device record) and host synchronisation.
pub fn api_is_traced(name: &str) -> bool {
    const PREFIXES: [&str; 15] = [
        "cudaLaunch",
        "cudaGraphLaunch",
        "cudaMemcpy",
        "cudaMemset",
        "cudaStreamSynchronize",
        "cudaDeviceSynchronize",
        "cudaEventSynchronize",
        "cudaThreadSynchronize",
        "cuLaunch",
        "cuGraphLaunch",
        "cuMemcpy",
        "cuMemset",
        "cuStreamSynchronize",
        "cuCtxSynchronize",
        "cuEventSynchronize",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) && !name.contains("HostFunc")
}

/// Enables API records for the traced functions only (CUPTI 12.5+), so the
/// cost is one record per launch, not one per API call.
fn enable_api_records(c: &Cupti) -> String {
    let (Some(name_of), Some(drv), Some(rt)) = (c.callback_name, c.enable_driver_api, c.enable_runtime_api) else {
        return "no API records (needs CUPTI 12.5+)".into();
    };
    let mut enabled = [0usize; 2];
    for (i, (domain, enable)) in
        [(wire::domain::DRIVER as u32, drv), (wire::domain::RUNTIME as u32, rt)].into_iter().enumerate()
    {
        // Callback ids are small and dense; 4096 is well past the last one of CUDA 13.
        for cbid in 1..4096u32 {
            let mut p: *const c_char = std::ptr::null();
            // SAFETY: valid out-pointer; CUPTI returns a static string.
            if unsafe { name_of(domain, cbid, &mut p) } != CUPTI_SUCCESS || p.is_null() {
                continue;
            }
            // SAFETY: NUL-terminated static string from CUPTI.
            let name = unsafe { CStr::from_ptr(p) }.to_string_lossy();
            // SAFETY: plain call.
            if api_is_traced(&name) && unsafe { enable(cbid, 1) } == CUPTI_SUCCESS {
                enabled[i] += 1;
            }
        }
    }
    format!("API records for {} driver and {} runtime functions", enabled[0], enabled[1])
}

// ---------------------------------------------------------------- callbacks

/// CUPTI's clock: CLOCK_MONOTONIC, the clock of eBPF's `bpf_ktime_get_ns`.
extern "C" fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

fn buffer_layout() -> std::alloc::Layout {
    // 8-byte alignment is what CUPTI requires of activity buffers.
    std::alloc::Layout::from_size_align(BUFFER_SIZE, 8).unwrap_or(std::alloc::Layout::new::<u64>())
}

unsafe extern "C" fn buffer_requested(buffer: *mut *mut u8, size: *mut usize, max_records: *mut usize) {
    let _ = catch_unwind(|| {
        if buffer.is_null() || size.is_null() {
            return;
        }
        let mut p = std::ptr::null_mut();
        if BUFFERS_OUT.fetch_add(1, Ordering::Relaxed) < MAX_BUFFERS {
            // SAFETY: non-zero size layout.
            p = unsafe { std::alloc::alloc(buffer_layout()) };
        }
        if p.is_null() {
            BUFFERS_OUT.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: CUPTI passes valid out-pointers (checked non-null above).
        unsafe {
            *buffer = p;
            *size = if p.is_null() { 0 } else { BUFFER_SIZE };
            if !max_records.is_null() {
                *max_records = 0;
            }
        }
    });
}

unsafe extern "C" fn buffer_completed(_ctx: *mut c_void, _stream: u32, buffer: *mut u8, size: usize, valid: usize) {
    if buffer.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let Some(a) = ACTIVE.get()
            && !FORKED.load(Ordering::Relaxed)
        {
            // SAFETY: CUPTI hands back a buffer we allocated, `valid <= size` bytes written.
            unsafe { process(a, buffer, valid.min(size)) };
        }
    }));
    if size == BUFFER_SIZE {
        // SAFETY: every buffer CUPTI returns came from `buffer_requested`, with this layout.
        unsafe { std::alloc::dealloc(buffer, buffer_layout()) };
        BUFFERS_OUT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads names out of CUPTI-owned memory.
struct CuptiNames<'a>(&'a Cupti);

impl Resolve for CuptiNames<'_> {
    fn c_string(&self, ptr: u64) -> Option<&[u8]> {
        if ptr == 0 {
            return None;
        }
        let p = ptr as usize as *const c_char;
        // SAFETY: CUPTI documents kernel and device name pointers as valid
        // NUL-terminated strings that outlive the record; at most
        // MAX_NAME_LEN bytes are read.
        unsafe {
            let n = libc::strnlen(p, MAX_NAME_LEN);
            Some(std::slice::from_raw_parts(p.cast::<u8>(), n))
        }
    }

    fn api_name(&self, domain: u8, cbid: u32) -> Option<Vec<u8>> {
        let f = self.0.callback_name?;
        let mut p: *const c_char = std::ptr::null();
        // SAFETY: valid out-pointer; CUPTI returns a static string.
        if unsafe { f(domain as u32, cbid, &mut p) } != CUPTI_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: NUL-terminated static string from CUPTI.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
    }
}

/// # Safety
/// `buffer` holds `valid` bytes of activity records written by CUPTI.
unsafe fn process(a: &Active, buffer: *mut u8, valid: usize) {
    // SAFETY: per the contract above.
    let bytes = unsafe { std::slice::from_raw_parts(buffer, valid) };
    let names = CuptiNames(&a.cupti);
    let mut conv = a.converter.lock().unwrap_or_else(|p| p.into_inner());
    let mut batch = Vec::with_capacity(BATCH.min(valid / 40 + 1));
    let mut record: *mut c_void = std::ptr::null_mut();
    let mut unreadable = 0u64;
    loop {
        // SAFETY: CUPTI's iterator over the buffer it filled.
        if unsafe { (a.cupti.next_record)(buffer, valid, &mut record) } != CUPTI_SUCCESS || record.is_null() {
            break;
        }
        let offset = (record as usize).wrapping_sub(buffer as usize);
        if offset >= valid {
            break;
        }
        match conv.convert(&bytes[offset..], &names) {
            Ok(Some(act)) => batch.push(act),
            Ok(None) => {}
            Err(e) => {
                unreadable += 1;
                log_once(Level::Error, "unreadable", format_args!("dropping unreadable records: {e}"));
            }
        }
        if batch.len() >= BATCH {
            a.sender.submit(Batch { activities: std::mem::take(&mut batch), names: conv.names.take_new() });
        }
    }
    a.sender.submit(Batch { activities: batch, names: conv.names.take_new() });
    a.sender.add_dropped(unreadable);
    if conv.names.overflow > 0 {
        log_once(
            Level::Error,
            "names",
            format_args!("more than {} distinct names; later ones are sent without a name", wire::MAX_NAMES),
        );
    }
    drop(conv);
    let mut dropped = 0usize;
    // SAFETY: valid out-pointer; null context = the global queue.
    if unsafe { (a.cupti.dropped_records)(std::ptr::null_mut(), 0, &mut dropped) } == CUPTI_SUCCESS {
        a.sender.add_cupti_dropped(dropped as u64);
    }
}

extern "C" fn at_exit() {
    let _ = catch_unwind(|| {
        let Some(a) = ACTIVE.get() else { return };
        if FORKED.load(Ordering::Relaxed) || std::process::id() != a.pid {
            return;
        }
        // SAFETY: forced flush, documented for at-exit handlers.
        unsafe { (a.cupti.flush_all)(FLUSH_FORCED) };
        let ms = std::env::var("STRAND_CUPTI_EXIT_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
        if !a.sender.flush(Duration::from_millis(ms)) {
            log_once(Level::Error, "exit", format_args!("records still queued after {ms} ms at exit are lost"));
        }
    });
}

/// Runs in the child after `fork()`: only async-signal-safe work.
extern "C" fn atfork_child() {
    FORKED.store(true, Ordering::SeqCst);
    if let Some(a) = ACTIVE.get() {
        a.sender.close_inherited_connection();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_copies_and_syncs_are_traced_other_calls_are_not() {
        for yes in [
            "cudaLaunchKernel_v7000",
            "cudaLaunchKernelExC_v11060",
            "cudaGraphLaunch_v10000",
            "cudaMemcpyAsync_v3020",
            "cudaMemsetAsync_ptsz_v7000",
            "cudaStreamSynchronize_v3020",
            "cudaDeviceSynchronize_v3020",
            "cudaEventSynchronize_v3020",
            "cuLaunchKernel",
            "cuLaunchKernelEx",
            "cuMemcpyHtoDAsync_v2",
            "cuCtxSynchronize",
            "cuStreamSynchronize_ptsz",
        ] {
            assert!(api_is_traced(yes), "{yes}");
        }
        for no in [
            "cudaGetDevice_v3020",
            "cudaStreamIsCapturing_v10000",
            "cudaLaunchHostFunc_v10000",
            "cuLaunchHostFunc",
            "cuCtxGetCurrent",
            "cudaMalloc_v3020",
        ] {
            assert!(!api_is_traced(no), "{no}");
        }
    }

    #[test]
    fn the_timestamp_callback_is_clock_monotonic() {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let before = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let t = monotonic_ns();
        assert!(t >= before && t - before < 1_000_000_000);
    }
}
