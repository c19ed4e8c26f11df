//! Runs a command under the tracer and writes every row it captures as JSON
//! lines, for checks on real hardware (bench/gpu/validate.sh).
//!
//! `trace_run OUT.jsonl [--lib PATH]... -- COMMAND ARGS...`
//!
//! Starts the tracer (probing every GPU library already mapped, plus each
//! `--lib`), runs COMMAND, polls every 100 ms until it exits and one second
//! more, then writes the rows (`{"table": "nccl_calls", ...}` per line) and
//! prints the tracer's stats. Exits with COMMAND's status.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use strand_ebpf::{Output, Tracer, TracerConfig};

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `"key": value` pairs; `None` becomes null. Integers that may exceed 2^53
/// (hashes, pointers) are written as strings of their unsigned hex.
struct Obj(String);
impl Obj {
    fn new(table: &str) -> Self {
        Obj(format!("{{\"table\": {}", json_str(table)))
    }
    fn s(mut self, k: &str, v: Option<&str>) -> Self {
        let _ = write!(self.0, ", \"{k}\": {}", v.map_or("null".into(), json_str));
        self
    }
    fn i(mut self, k: &str, v: Option<i64>) -> Self {
        let _ = write!(self.0, ", \"{k}\": {}", v.map_or("null".into(), |v| v.to_string()));
        self
    }
    fn hex(mut self, k: &str, v: Option<i64>) -> Self {
        let _ = write!(self.0, ", \"{k}\": {}", v.map_or("null".into(), |v| format!("\"0x{:x}\"", v as u64)));
        self
    }
    fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|a| a == "--") else {
        eprintln!("usage: trace_run OUT.jsonl [--lib PATH]... -- COMMAND ARGS...");
        std::process::exit(2);
    };
    let (opts, cmd) = (&args[..split], &args[split + 1..]);
    let Some(out_path) = opts.first() else {
        eprintln!("usage: trace_run OUT.jsonl [--lib PATH]... -- COMMAND ARGS...");
        std::process::exit(2);
    };
    let mut cfg = TracerConfig::new("validation", "gpu-node");
    cfg.rescan_period = Duration::from_millis(500);
    cfg.extra_libraries = opts.windows(2).filter(|w| w[0] == "--lib").map(|w| w[1].clone().into()).collect();

    let mut tracer = match Tracer::start(cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("trace_run: {e}");
            std::process::exit(3);
        }
    };
    let mut out = Output::default();
    let Some((program, rest)) = cmd.split_first() else {
        eprintln!("trace_run: no command");
        std::process::exit(2);
    };
    let mut child = std::process::Command::new(program).args(rest).spawn().unwrap_or_else(|e| {
        eprintln!("trace_run: cannot run {program}: {e}");
        std::process::exit(3);
    });
    let status = loop {
        tracer.poll(&mut out).expect("poll");
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        tracer.poll(&mut out).expect("poll");
    }

    let mut lines = Vec::new();
    for r in &out.nccl_calls {
        lines.push(
            Obj::new("nccl_calls")
                .i("pid", Some(r.pid as i64))
                .i("tid", Some(r.tid as i64))
                .i("enter_ns", Some(r.enter_ns))
                .i("exit_ns", r.exit_ns)
                .s("op", Some(&r.op))
                .i("count", r.count)
                .s("datatype", r.datatype.as_deref())
                .i("bytes", r.bytes)
                .s("redop", r.redop.as_deref())
                .i("root", r.root.map(i64::from))
                .i("peer", r.peer.map(i64::from))
                .hex("comm_ptr", r.comm_ptr)
                .hex("comm_hash", r.comm_hash)
                .i("rank", r.rank.map(i64::from))
                .i("nranks", r.nranks.map(i64::from))
                .i("seq", r.seq)
                .hex("stream", r.stream)
                .i("ret", r.ret.map(i64::from))
                .i("group_id", r.group_id)
                .i("color", r.color.map(i64::from))
                .i("key", r.key.map(i64::from))
                .hex("new_comm_ptr", r.new_comm_ptr)
                .end(),
        );
    }
    for r in &out.cuda_sync_calls {
        lines.push(
            Obj::new("cuda_sync_calls")
                .i("pid", Some(r.pid as i64))
                .i("tid", Some(r.tid as i64))
                .i("enter_ns", Some(r.enter_ns))
                .i("exit_ns", Some(r.exit_ns))
                .i("blocked_ns", Some(r.blocked_ns))
                .s("api", Some(&r.api))
                .hex("handle", r.handle)
                .i("ret", r.ret.map(i64::from))
                .end(),
        );
    }
    for r in &out.process_events {
        lines.push(
            Obj::new("process_events")
                .i("ts_ns", Some(r.ts_ns))
                .i("pid", Some(r.pid as i64))
                .i("ppid", r.ppid.map(i64::from))
                .s("kind", Some(&r.kind))
                .s("comm", r.comm.as_deref())
                .s("exe", r.exe.as_deref())
                .i("exit_code", r.exit_code.map(i64::from))
                .i("signal", r.signal.map(i64::from))
                .s("gpu_libraries", r.gpu_libraries.as_deref())
                .end(),
        );
    }
    let mut file = std::fs::File::create(out_path).expect("create output");
    for l in &lines {
        writeln!(file, "{l}").expect("write output");
    }
    let stats = tracer.stats();
    eprintln!("trace_run: {} rows to {out_path}; stats {stats:?}", lines.len());
    for lib in tracer.library_files() {
        eprintln!(
            "trace_run: probed {} ({}, {:?}, {} probes)",
            lib.path.display(),
            lib.kind,
            lib.nccl_version,
            lib.probes
        );
    }
    std::process::exit(status.code().unwrap_or(1));
}
