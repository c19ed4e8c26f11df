//! Which parts of the sources run, as `strand-agent check` and `/metrics`
//! show them, on both kinds of host: with tracefs mounted and without.
//! Each case runs the agent in a private mount namespace where the test
//! mounts tracefs or unmounts tracefs and debugfs (nothing reaches the host).
//!
//! They load BPF programs: run them as root (CI does).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Mounts {
    Tracefs,
    NoTracefs,
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("these tests load BPF programs: run them as root (CI does), e.g. `sudo -E cargo test -p strand-agent`");
    }
}

/// The agent, in a new private mount namespace with `mounts`, with a
/// configuration that turns off the sources this host may lack for other
/// reasons (NVML needs a GPU, the CUPTI injection library a build).
fn agent(dir: &Path, mounts: Mounts, extra_config: &str) -> Command {
    let config = dir.join("agent.toml");
    let text = format!("[nvml]\nenabled = false\ninfiniband = false\n[cupti]\nenabled = false\n{extra_config}");
    std::fs::write(&config, text).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_strand-agent"));
    c.env_remove("STRAND_CONFIG").env("STRAND_LOG", "warn").arg("--config").arg(&config).arg("--data-dir").arg(dir);
    // SAFETY: only system calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let p = |s: &[u8]| s.as_ptr().cast::<libc::c_char>();
            let (none, no_data) = (std::ptr::null::<libc::c_char>(), std::ptr::null::<libc::c_void>());
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(none, p(b"/\0"), none, libc::MS_REC | libc::MS_PRIVATE, no_data) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if mounts == Mounts::Tracefs {
                if libc::mount(p(b"nodev\0"), p(b"/sys/kernel/tracing\0"), p(b"tracefs\0"), 0, no_data) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else {
                for path in [&b"/sys/kernel/debug/tracing\0"[..], b"/sys/kernel/tracing\0", b"/sys/kernel/debug\0"] {
                    while libc::umount2(p(path), libc::MNT_DETACH) == 0 {}
                }
            }
            Ok(())
        });
    }
    c
}

/// `(source, part) → (state, detail)` from check's table.
fn table(out: &Output) -> Vec<(String, String, String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with('\n'), "the table ends with a newline: {stdout:?}");
    stdout
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split_whitespace();
            let (s, p, st) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
            (s.to_string(), p.to_string(), st.to_string(), f.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

fn row<'a>(
    rows: &'a [(String, String, String, String)],
    source: &str,
    part: &str,
) -> &'a (String, String, String, String) {
    rows.iter().find(|r| r.0 == source && r.1 == part).unwrap_or_else(|| panic!("no {source} {part} in {rows:?}"))
}

#[test]
fn check_without_tracefs_follows_exec_and_exit_by_btf_and_says_what_a_tracepoint_would_lack() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // Defaults: BTF raw tracepoints, which need no tracefs. Every part runs.
    let out = agent(dir.path(), Mounts::NoTracefs, "").arg("check").output().unwrap();
    let rows = table(&out);
    for part in ["nccl", "cuda_sync", "exec", "exit", "proc_scan"] {
        assert_eq!(row(&rows, "ebpf", part).2, "up", "{rows:?}");
    }
    assert!(row(&rows, "ebpf", "exec").3.starts_with("tp_btf/sched_process_exec"), "{rows:?}");
    assert_eq!(row(&rows, "nvml", "counters").2, "off");
    assert!(out.status.success(), "every enabled part runs: {rows:?}\n{}", String::from_utf8_lossy(&out.stderr));

    // Classic tracepoints only: exec and exit cannot run, and check says so, exactly.
    let out = agent(dir.path(), Mounts::NoTracefs, "[ebpf]\nprocess_hooks = [\"tracepoint\"]\n")
        .arg("check")
        .output()
        .unwrap();
    let rows = table(&out);
    for part in ["exec", "exit"] {
        let r = row(&rows, "ebpf", part);
        assert_eq!(r.2, "down", "{rows:?}");
        assert!(r.3.contains("tracefs is not mounted"), "the reason is named: {r:?}");
    }
    for part in ["nccl", "cuda_sync", "proc_scan"] {
        assert_eq!(row(&rows, "ebpf", part).2, "up", "only what the hooks feed is down: {rows:?}");
    }
    assert_eq!(out.status.code(), Some(1), "an enabled part cannot run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 part(s) of enabled sources cannot run: ebpf exec, ebpf exit"), "{stderr}");
}

#[test]
fn check_with_tracefs_attaches_the_classic_tracepoints() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out =
        agent(dir.path(), Mounts::Tracefs, "[ebpf]\nprocess_hooks = [\"tracepoint\"]\n").arg("check").output().unwrap();
    let rows = table(&out);
    for part in ["exec", "exit"] {
        let r = row(&rows, "ebpf", part);
        assert_eq!(r.2, "up", "{rows:?}");
        assert!(r.3.starts_with("tracepoint sched/"), "{r:?}");
    }
    assert!(out.status.success(), "{rows:?}\n{}", String::from_utf8_lossy(&out.stderr));
}

fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.contains("strand_agent_source_up").then_some(text)
}

/// Runs the agent until its `/metrics` shows the eBPF parts and the markers
/// socket (the endpoint serves while the sources still start, so the test
/// waits for every part it asserts), then stops it.
fn metrics_of(mounts: Mounts, extra_config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
    let mut child = agent(dir.path(), mounts, extra_config)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        if let Some(t) = scrape(port).filter(|t| t.contains(r#"part="proc_scan""#) && t.contains(r#"part="socket""#)) {
            break t;
        }
        assert!(Instant::now() < deadline, "no eBPF parts or markers socket on /metrics");
        assert!(child.try_wait().unwrap().is_none(), "the agent stopped");
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "the agent stops cleanly on SIGTERM: {status}");
    text
}

#[test]
fn metrics_show_which_parts_run_with_and_without_tracefs() {
    require_root();
    let up = |part: &str, v: u8| format!("strand_agent_source_up{{source=\"ebpf\",part=\"{part}\"}} {v}");
    let errors = |part: &str, v: u8| format!("strand_agent_source_errors_total{{source=\"ebpf\",part=\"{part}\"}} {v}");

    // Everything available: all parts up, no errors.
    let text = metrics_of(Mounts::NoTracefs, "");
    for part in ["nccl", "cuda_sync", "exec", "exit", "proc_scan"] {
        assert!(text.contains(&up(part, 1)), "{part}:\n{text}");
    }
    assert!(!text.contains("strand_agent_source_errors_total{source=\"ebpf\""), "{text}");
    assert!(!text.contains("source=\"nvml\""), "a source turned off has no series:\n{text}");
    assert!(text.contains("strand_agent_source_up{source=\"markers\",part=\"socket\"} 1"), "{text}");

    // Classic tracepoints without tracefs: exec and exit down, counted once each.
    let text = metrics_of(Mounts::NoTracefs, "[ebpf]\nprocess_hooks = [\"tracepoint\"]\n");
    for part in ["exec", "exit"] {
        assert!(text.contains(&up(part, 0)) && text.contains(&errors(part, 1)), "{part}:\n{text}");
    }
    for part in ["nccl", "cuda_sync", "proc_scan"] {
        assert!(text.contains(&up(part, 1)), "{part}:\n{text}");
    }

    // The same with tracefs mounted: up.
    let text = metrics_of(Mounts::Tracefs, "[ebpf]\nprocess_hooks = [\"tracepoint\"]\n");
    for part in ["nccl", "cuda_sync", "exec", "exit", "proc_scan"] {
        assert!(text.contains(&up(part, 1)), "{part}:\n{text}");
    }
}
