//! NVIDIA's wheels from PyPI, fetched with pip and kept between runs, for
//! tests that use the real libraries and headers. Shared by strand-ebpf's
//! and strand-inject's tests (`#[path]`-included).
//!
//! Cache: `$STRAND_WHEEL_CACHE`, else `$XDG_CACHE_HOME/strand/wheels`, else
//! `~/.cache/strand/wheels`; one directory per wheel, written under a
//! temporary name and renamed when complete.
#![allow(dead_code)]

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// One download at a time per test process: concurrent pip runs share pip's cache.
static FETCHING: Mutex<()> = Mutex::new(());

/// An unpacked wheel, or why there is none.
pub enum Wheel {
    /// The directory the wheel was unpacked into.
    Ready(PathBuf),
    /// The package registry cannot be reached: the test says so and skips.
    Unreachable(String),
}

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STRAND_WHEEL_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("strand-cache"));
    base.join("strand/wheels")
}

/// The registry pip uses (`PIP_INDEX_URL`, else PyPI), as host and port.
fn index_host() -> (String, u16) {
    let url = std::env::var("PIP_INDEX_URL").unwrap_or_else(|_| "https://pypi.org/simple".into());
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(&url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let https = !url.starts_with("http://");
    match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().unwrap_or(443)),
        _ => (authority.to_string(), if https { 443 } else { 80 }),
    }
}

/// Whether a TCP connection to the registry opens within 10 s.
fn registry_reachable() -> Result<(), String> {
    let (host, port) = index_host();
    let addrs = (host.as_str(), port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("cannot connect to {host}:{port} ({a}): {e}"),
        }
    }
    Err(last)
}

/// `name==version`, unpacked. Panics on any failure other than an
/// unreachable registry (pip missing, no such version, a broken wheel).
pub fn fetch(name: &str, version: &str) -> Wheel {
    fetch_members(name, version, "")
}

/// [`fetch`], keeping only the files whose path in the wheel contains
/// `containing` (e.g. `/include/`; empty: all).
pub fn fetch_members(name: &str, version: &str, containing: &str) -> Wheel {
    let tag: String = containing.chars().filter(char::is_ascii_alphanumeric).collect();
    let key = if tag.is_empty() { format!("{name}-{version}") } else { format!("{name}-{version}-{tag}") };
    let dir = cache_dir().join(&key);
    let _one = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join(".complete").exists() {
        return Wheel::Ready(dir);
    }
    let parent = dir.parent().expect("cache dir has a parent");
    std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    let tmp = parent.join(format!(".{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("creating {}: {e}", tmp.display()));
    let spec = format!("{name}=={version}");
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q"])
        .arg("-d")
        .arg(&tmp)
        .arg(&spec)
        .output()
        .unwrap_or_else(|e| panic!("running python3 -m pip (scripts/install-deps.sh --test installs it): {e}"));
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Err(why) = registry_reachable() {
            return Wheel::Unreachable(format!("pip download {spec} failed and the registry is unreachable ({why})"));
        }
        panic!("pip download {spec} failed although the registry is reachable:\n{stderr}");
    }
    let whl = std::fs::read_dir(&tmp)
        .expect("read download dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .unwrap_or_else(|| panic!("pip download {spec} saved no .whl"));
    let unpacked = tmp.join("x");
    const UNZIP: &str = "import sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        for m in z.namelist():\n    \
            if sys.argv[3] in m: z.extract(m, sys.argv[2])\n";
    let st = Command::new("python3")
        .args(["-c", UNZIP])
        .arg(&whl)
        .arg(&unpacked)
        .arg(containing)
        .status()
        .expect("running python3 to unpack the wheel");
    assert!(st.success() && unpacked.is_dir(), "unpacking {} (members containing {containing:?})", whl.display());
    std::fs::write(unpacked.join(".complete"), &spec).expect("marker");
    // Another test may have finished the same wheel meanwhile: keep theirs.
    if std::fs::rename(&unpacked, &dir).is_err() && !dir.join(".complete").exists() {
        panic!("cannot move {} to {}", unpacked.display(), dir.display());
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Wheel::Ready(dir)
}

/// The first file named `name` under `dir`, depth first.
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
        }
    }
    None
}

/// Prints why a real-library test is skipped, visibly.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    println!("SKIPPED {test}: {why}");
}
