//! Helpers for strand's end-to-end tests: find the built binaries, run them
//! as real processes, stop them with signals, read their output independently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`strand-agent`, `strand`) next to the test executable.
/// `cargo test --workspace` builds them (each binary's own package has
/// integration tests, which is what makes cargo build it); `cargo test -p
/// strand-tests` alone does not.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <dir>/<profile>/deps/<test>: binaries are in <dir>/<profile>, unless a
    // separate cargo build-dir is configured; then they are in <target>/<profile>.
    let profile_dir = exe.parent().and_then(Path::parent).expect("<profile> directory");
    let profile = profile_dir.file_name().expect("profile name");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let candidates = [profile_dir.join(name), target.join(profile).join(name)];
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| {
        panic!("{name} is not built (looked at {candidates:?}); run `cargo build --workspace` (or `cargo test --workspace`) first")
    })
}

/// A child process that is killed when dropped (a failing test leaves nothing behind).
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, name: &str) -> Self {
        let child = cmd.stdin(Stdio::null()).spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, name: name.to_string() }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc_kill(self.pid(), sig) };
    }

    /// Waits for exit, failing the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(start.elapsed() < timeout, "{} did not exit within {timeout:?}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

/// Every file under `dir` whose name ends with `suffix`, sorted.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The repository's `../shared/data` (test data shared with other tools).
pub fn shared_data() -> PathBuf {
    if let Ok(p) = std::env::var("STRAND_TEST_DATA") {
        return PathBuf::from(p);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        for cand in [dir.join("shared/data"), dir.join("../shared/data")] {
            if cand.join("kineto").exists() {
                return cand;
            }
        }
        if !dir.pop() {
            panic!("shared/data not found above {}; set STRAND_TEST_DATA", env!("CARGO_MANIFEST_DIR"));
        }
    }
}

/// Reads Parquet files with pyarrow (an independent reader) and returns
/// `(table metadata, rows)` per file, as printed by the script.
pub fn pyarrow_read(files: &[PathBuf]) -> Vec<(String, i64)> {
    let script = r#"
import sys, pyarrow.parquet as pq
for path in sys.argv[1:]:
    f = pq.ParquetFile(path)
    meta = f.metadata.metadata or {}
    table = meta.get(b"strand.table", b"?").decode()
    rows = f.read().num_rows
    print(f"{table}\t{rows}")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs it)");
    assert!(out.status.success(), "pyarrow could not read the files: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(t, r)| (t.to_string(), r.parse().unwrap_or(-1))))
        .collect()
}

/// Writes an agent config for a standalone test agent with data in `data`:
/// no metrics endpoint, no InfiniBand, NVML every 250 ms, 2 s windows
/// closing after 3 s, then `extra` TOML lines. Returns the file's path.
pub fn agent_config(dir: &Path, data: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"\"\n[nvml]\nperiod = \"250ms\"\ninfiniband = false\n\
             [windows]\nperiod = \"2s\"\nlateness = \"3s\"\nnccl_join_hold = \"1s\"\n{extra}",
            data.display()
        ),
    )
    .expect("write the agent config");
    cfg
}

/// Starts `strand-agent --config cfg --simulate-gpus 1` and waits (20 s at
/// most) until it listens on `socket` (its CUPTI or markers socket), so the
/// test can feed it records.
pub fn simulated_agent(cfg: &Path, socket: &Path) -> Proc {
    let agent = Proc::spawn(
        Command::new(bin("strand-agent"))
            .arg("--config")
            .arg(cfg)
            .arg("--simulate-gpus")
            .arg("1")
            .env("STRAND_LOG", "warn"),
        "strand-agent",
    );
    assert!(eventually(Duration::from_secs(20), || socket.exists()), "{} appears", socket.display());
    agent
}

/// A Ballista scheduler and `executors` executors, each its own
/// `strand-ballista` process on loopback, logging into `dir`; returns the
/// `--engine` URL once every executor has registered. `env` adds what each
/// process needs (the S3 endpoint and keys of a dataset on S3).
pub fn ballista_cluster(
    dir: &Path,
    executors: usize,
    env: impl Fn(&mut Command) -> &mut Command,
) -> (String, Vec<Proc>) {
    let port = free_port();
    let log = |name: &str| std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut procs = vec![Proc::spawn(
        env(&mut Command::new(bin("strand-ballista")))
            .args(["scheduler", "--bind", &format!("127.0.0.1:{port}"), "--external-host", "127.0.0.1"])
            .env("RUST_LOG", "info")
            .stderr(log("scheduler")),
        "strand-ballista scheduler",
    )];
    for i in 0..executors {
        let work = dir.join(format!("executor{i}"));
        std::fs::create_dir_all(&work).unwrap();
        procs.push(Proc::spawn(
            env(&mut Command::new(bin("strand-ballista")))
                .args(["executor", "--scheduler", &format!("127.0.0.1:{port}"), "--bind-host", "127.0.0.1"])
                .args(["--port", &free_port().to_string(), "--grpc-port", &free_port().to_string()])
                .args(["--concurrent-tasks", "2", "--work-dir"])
                .arg(&work)
                .env("RUST_LOG", "info")
                .stderr(log(&format!("executor{i}"))),
            "strand-ballista executor",
        ));
    }
    let registered = eventually(Duration::from_secs(60), || {
        let log = std::fs::read_to_string(dir.join("scheduler.log")).unwrap_or_default();
        log.matches("register executor request").count() >= executors
    });
    let log = std::fs::read_to_string(dir.join("scheduler.log")).unwrap_or_default();
    assert!(registered, "{executors} executors did not register with the scheduler within 60 s:\n{log}");
    (format!("ballista://127.0.0.1:{port}"), procs)
}
