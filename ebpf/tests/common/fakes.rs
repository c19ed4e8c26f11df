//! Builds the fake NCCL / CUDA libraries and the test program from
//! `tests/fake/*.c`, and drives the program. Shared by the tests and the
//! benchmark example (`#[path]`-included).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

fn fake_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake").join(name)
}

fn cc(args: &[&str]) {
    let out = Command::new("cc").args(args).output().expect("running cc (a C compiler is needed for these tests)");
    assert!(out.status.success(), "cc {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The fake libraries and programs, built into `dir`.
pub struct Fakes {
    pub libdir: PathBuf,
    pub app: PathBuf,
    pub hashref: PathBuf,
    /// NCCL_VERSION_CODE the fake libnccl reports.
    pub code: i32,
}

pub fn build_fakes(dir: &Path, code: i32, version: &str, strip: bool) -> Fakes {
    let libdir = dir.join("lib");
    std::fs::create_dir_all(&libdir).expect("mkdir");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let strip_flag = if strip { "-s" } else { "-g" };
    let cuda = s(&libdir.join("libcuda.so.1"));
    cc(&["-shared", "-fPIC", "-O2", strip_flag, "-o", &cuda, &s(&fake_src("fake_cuda.c"))]);
    let cudart = s(&libdir.join("libcudart.so.12"));
    let libarg = format!("-L{}", s(&libdir));
    cc(&[
        "-shared",
        "-fPIC",
        "-O2",
        strip_flag,
        "-o",
        &cudart,
        &s(&fake_src("fake_cudart.c")),
        &libarg,
        "-l:libcuda.so.1",
        "-Wl,-rpath,$ORIGIN",
    ]);
    let nccl = s(&libdir.join("libnccl.so.2"));
    let d_code = format!("-DFAKE_NCCL_CODE={code}");
    let d_str = format!("-DFAKE_NCCL_STR=\"{version}\"");
    cc(&["-shared", "-fPIC", "-O2", "-Wall", strip_flag, &d_code, &d_str, "-o", &nccl, &s(&fake_src("fake_nccl.c"))]);
    let app = dir.join("fake_app");
    cc(&["-O2", "-Wall", "-o", &s(&app), &s(&fake_src("fake_app.c")), "-ldl", "-lpthread"]);
    let hashref = dir.join("hashref");
    cc(&["-O2", "-Wall", "-o", &s(&hashref), &s(&fake_src("hashref.c"))]);
    Fakes { libdir, app, hashref, code }
}

impl Fakes {
    /// NCCL's commHash from the C reference implementation (tests/fake/hashref.c).
    pub fn hashref(&self, args: &[String]) -> u64 {
        let out = Command::new(&self.hashref).args(args).output().expect("hashref");
        assert!(out.status.success(), "hashref {args:?} failed");
        u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).expect("hashref prints hex")
    }
    pub fn root_hash(&self, id_hex: &str) -> u64 {
        self.hashref(&["root".into(), self.code.to_string(), id_hex.into()])
    }
    pub fn split_hash(&self, parent: u64, count: u32, color: i32) -> u64 {
        self.hashref(&[
            "split".into(),
            self.code.to_string(),
            format!("{parent:x}"),
            count.to_string(),
            color.to_string(),
        ])
    }
}

/// A running fake_app, stopped at "ready" until [`App::go`].
pub struct App {
    child: Child,
    pub stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub pid: i32,
}

impl App {
    pub fn spawn(f: &Fakes, pre: &[&str], libdir: &Path, args: &[&str]) -> App {
        let mut cmd = Command::new(&f.app);
        cmd.args(pre).arg(libdir).args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fake_app");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read fake_app");
        assert_eq!(line.trim(), "ready", "fake_app {args:?} did not start");
        let pid = child.id() as i32;
        App { child, stdin, stdout, pid }
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"go\n").expect("write go");
        stdin.flush().expect("flush");
    }

    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        line
    }

    /// Closes stdin, reads the log to the end and waits.
    pub fn finish(mut self) -> (Vec<String>, ExitStatus) {
        drop(self.stdin.take());
        let mut text = String::new();
        self.stdout.read_to_string(&mut text).expect("read log");
        let status = self.child.wait().expect("wait");
        (text.lines().map(str::to_string).collect(), status)
    }
}
