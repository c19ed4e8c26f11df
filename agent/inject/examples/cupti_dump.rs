//! Listens where the agent would and prints every record the injection
//! library sends, one JSON object per line (timestamps: CLOCK_MONOTONIC ns).
//! A debugging and validation tool (bench/gpu/cupti_validate.sh), independent
//! of the agent's Parquet pipeline.
//!
//! ```text
//! cargo run --release -p strand-inject --example cupti_dump -- /tmp/strand-cupti.sock [--exit-after N] > records.jsonl
//! ```
//! With `--exit-after N` it exits once N clients have connected and gone;
//! the last line is a summary per process: records, dropped, cupti_dropped.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use strand_inject::sock::{self, Received};
use strand_inject::wire::{self, Activity, Connection};

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

struct Client {
    fd: OwnedFd,
    conn: Connection,
    pid: u32,
}

#[derive(Default, Debug)]
struct Totals {
    records: u64,
    dropped: u64,
    cupti_dropped: u64,
    frames_lost: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first().map(PathBuf::from) else {
        eprintln!("usage: cupti_dump SOCKET [--exit-after N]");
        std::process::exit(2);
    };
    let exit_after: Option<usize> =
        args.iter().position(|a| a == "--exit-after").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok());
    let _ = std::fs::remove_file(&path);
    let listener = sock::listen(&path, 128).unwrap_or_else(|e| {
        eprintln!("cupti_dump: {}: {e}", path.display());
        std::process::exit(1)
    });
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666));
    eprintln!("cupti_dump: listening on {}", path.display());
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut clients: Vec<Client> = Vec::new();
    let mut totals: BTreeMap<u32, Totals> = BTreeMap::new();
    let mut gone = 0usize;
    let mut buf = vec![0u8; wire::MAX_FRAME];
    loop {
        while let Ok(fd) = sock::accept(listener.as_raw_fd()) {
            clients.push(Client { fd, conn: Connection::new(), pid: 0 });
        }
        let mut idle = true;
        clients.retain_mut(|c| loop {
            match sock::recv(c.fd.as_raw_fd(), &mut buf) {
                Ok(Received::Message(n)) => {
                    idle = false;
                    let f = match c.conn.decode(&buf[..n]) {
                        Ok(f) => f,
                        Err(e) => {
                            eprintln!("cupti_dump: pid {}: {e}; closing", c.pid);
                            gone += 1;
                            return false;
                        }
                    };
                    c.pid = f.header.pid;
                    let t = totals.entry(f.header.pid).or_default();
                    t.records += f.activities.len() as u64;
                    t.dropped = f.header.dropped;
                    t.cupti_dropped = f.header.cupti_dropped;
                    t.frames_lost += f.frames_lost;
                    for a in &f.activities {
                        let name = |id: u32| json_str(c.conn.name(id).map(|s| &**s).unwrap_or(""));
                        let line = match a {
                            Activity::Kernel(k) => format!(
                                r#"{{"pid":{},"kind":"kernel","start":{},"end":{},"corr":{},"device":{},"context":{},"stream":{},"grid":{:?},"block":{:?},"name":{}}}"#,
                                c.pid, k.start, k.end, k.correlation_id, k.device_id, k.context_id, k.stream_id, k.grid, k.block, name(k.name)
                            ),
                            Activity::Memcpy(m) => format!(
                                r#"{{"pid":{},"kind":"memcpy","start":{},"end":{},"corr":{},"device":{},"stream":{},"bytes":{},"copy_kind":{}}}"#,
                                c.pid, m.start, m.end, m.correlation_id, m.device_id, m.stream_id, m.bytes, m.copy_kind
                            ),
                            Activity::Memset(m) => format!(
                                r#"{{"pid":{},"kind":"memset","start":{},"end":{},"corr":{},"device":{},"stream":{},"bytes":{}}}"#,
                                c.pid, m.start, m.end, m.correlation_id, m.device_id, m.stream_id, m.bytes
                            ),
                            Activity::Sync(s) => format!(
                                r#"{{"pid":{},"kind":"sync","start":{},"end":{},"corr":{},"type":{}}}"#,
                                c.pid, s.start, s.end, s.correlation_id, s.sync_type
                            ),
                            Activity::Api(a) => format!(
                                r#"{{"pid":{},"kind":"api","start":{},"end":{},"corr":{},"tid":{},"name":{}}}"#,
                                c.pid, a.start, a.end, a.correlation_id, a.thread_id, name(a.name)
                            ),
                            Activity::Device(d) => format!(r#"{{"pid":{},"kind":"device","id":{},"name":{}}}"#, c.pid, d.id, name(d.name)),
                        };
                        let _ = writeln!(out, "{line}");
                    }
                }
                Ok(Received::Truncated(n)) => {
                    eprintln!("cupti_dump: oversized frame of {n} bytes; closing");
                    gone += 1;
                    return false;
                }
                Ok(Received::Closed) => {
                    gone += 1;
                    return false;
                }
                Err(_) => return true,
            }
        });
        if exit_after.is_some_and(|n| gone >= n && clients.is_empty()) {
            break;
        }
        if idle {
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let summary: Vec<String> = totals
        .iter()
        .map(|(pid, t)| {
            format!(
                r#""{pid}":{{"records":{},"dropped":{},"cupti_dropped":{},"frames_lost":{}}}"#,
                t.records, t.dropped, t.cupti_dropped, t.frames_lost
            )
        })
        .collect();
    let _ = writeln!(out, r#"{{"summary":{{{}}}}}"#, summary.join(","));
    let _ = out.flush();
    let _ = std::fs::remove_file(&path);
}
