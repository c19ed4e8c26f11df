//! `strand-agent wrap -- <command>`: runs a command with the CUPTI injection
//! library pointed at this agent's socket.
//!
//! It sets `CUDA_INJECTION64_PATH` (the CUDA driver loads the library from
//! `cuInit`) and `STRAND_CUPTI_SOCKET`, then replaces itself with the command
//! (`exec`), so the command keeps wrap's pid, signals and exit status.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

use crate::WrapArgs;
use crate::config::Config;
use crate::cupti::socket_path;

/// File name of the injection library.
pub const LIBRARY: &str = "libstrand_inject.so";

/// Runs `args.command` under the injection library. Returns only when the
/// command could not be started.
pub fn run(args: WrapArgs, cfg: &Config) -> anyhow::Result<ExitCode> {
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let prepared = prepare(&args.command, cfg, &|k| std::env::var_os(k), exe_dir.as_deref())?;
    for note in &prepared.notes {
        eprintln!("strand-agent wrap: {note}");
    }
    tracing::debug!(
        "CUDA_INJECTION64_PATH={} STRAND_CUPTI_SOCKET={}",
        prepared.library.display(),
        prepared.socket.display()
    );
    let mut command = prepared.command;
    let err = command.exec();
    bail!("cannot run {:?}: {err}", args.command[0])
}

/// The command to run, and notes for the user.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub command: Command,
    pub library: PathBuf,
    pub socket: PathBuf,
    pub notes: Vec<String>,
}

/// Builds the command: finds the library, resolves the socket, checks the
/// environment. `env` reads the caller's environment; `exe_dir` is where
/// `strand-agent` lives.
pub(crate) fn prepare(
    command: &[OsString],
    cfg: &Config,
    env: &dyn Fn(&str) -> Option<OsString>,
    exe_dir: Option<&Path>,
) -> anyhow::Result<Prepared> {
    let Some((program, rest)) = command.split_first() else {
        bail!("nothing to run: put the command after `--`, e.g. `strand-agent wrap -- python train.py`");
    };
    let library = find_library(env, exe_dir)?;
    let mut socket = socket_path(&cfg.cupti, &cfg.data_dir);
    if socket.is_relative() {
        // The workload may change directory; the library needs a path that still works.
        socket = std::env::current_dir().context("resolving the relative CUPTI socket path")?.join(socket);
    }
    if let Some(existing) = env("CUDA_INJECTION64_PATH").filter(|v| !v.is_empty())
        && Path::new(&existing) != library
    {
        bail!(
            "CUDA_INJECTION64_PATH is already set to {:?}; the CUDA driver loads one injection library per process. \
             Unset it to use strand's, or run the command without `wrap`",
            existing
        );
    }
    let mut notes = Vec::new();
    if !cfg.cupti.enabled {
        notes.push("cupti.enabled is false in the configuration, so no agent will listen; the library drops and counts its records".into());
    } else if !socket.exists() {
        notes.push(format!(
            "no agent is listening on {} yet; records are dropped and counted until one starts",
            socket.display()
        ));
    }
    let mut cmd = Command::new(program);
    cmd.args(rest).env("CUDA_INJECTION64_PATH", &library).env("STRAND_CUPTI_SOCKET", &socket);
    Ok(Prepared { command: cmd, library, socket, notes })
}

/// `$STRAND_INJECT_LIB`, else next to `strand-agent`, else in its cargo
/// build tree (`cargo run -p strand-agent` builds the library as a
/// dependency into `target/<profile>/deps`), else the install locations
/// (`/usr/lib/strand`: the Debian package).
pub(crate) fn find_library(env: &dyn Fn(&str) -> Option<OsString>, exe_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = env("STRAND_INJECT_LIB").filter(|v| !v.is_empty()).map(PathBuf::from) {
        if !p.is_file() {
            bail!("STRAND_INJECT_LIB names {}, which is not a file", p.display());
        }
        return absolute(p);
    }
    let mut tried = Vec::new();
    if let Some(dir) = exe_dir {
        tried.push(dir.join(LIBRARY));
        tried.push(dir.join("deps").join(LIBRARY));
        tried.push(dir.join("../lib/strand").join(LIBRARY));
    }
    tried.push(PathBuf::from("/usr/lib/strand").join(LIBRARY));
    tried.push(PathBuf::from("/usr/local/lib/strand").join(LIBRARY));
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => absolute(p.clone()),
        None => bail!(
            "{LIBRARY} not found; looked in {}. Install it next to strand-agent or set STRAND_INJECT_LIB",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn absolute(p: PathBuf) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(&p).with_context(|| format!("resolving {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |k| m.get(k).cloned()
    }

    fn envs(c: &Command) -> HashMap<String, String> {
        c.get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
            .collect()
    }

    #[test]
    fn the_command_gets_the_library_and_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join(LIBRARY), b"").unwrap();
        let cfg = Config { data_dir: dir.path().join("data"), ..Config::default() };
        let cmd: Vec<OsString> = ["python", "train.py", "--steps", "10"].iter().map(OsString::from).collect();
        let p = prepare(&cmd, &cfg, &env_of(&[]), Some(&bin)).unwrap();
        let e = envs(&p.command);
        let lib = std::fs::canonicalize(bin.join(LIBRARY)).unwrap();
        assert_eq!(e["CUDA_INJECTION64_PATH"], lib.display().to_string());
        assert_eq!(e["STRAND_CUPTI_SOCKET"], dir.path().join("data/cupti.sock").display().to_string());
        assert_eq!(p.command.get_program(), "python");
        assert_eq!(p.command.get_args().collect::<Vec<_>>(), ["train.py", "--steps", "10"]);
        assert!(p.notes.iter().any(|n| n.contains("no agent is listening")), "{:?}", p.notes);
        // An absolute socket in the configuration is used as is.
        let mut cfg = cfg;
        cfg.cupti.socket = PathBuf::from("/run/strand/cupti.sock");
        let p = prepare(&cmd, &cfg, &env_of(&[]), Some(&bin)).unwrap();
        assert_eq!(p.socket, PathBuf::from("/run/strand/cupti.sock"));
        // A cargo build tree: the library built as the agent's dependency, in deps/.
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir(tree.path().join("deps")).unwrap();
        std::fs::write(tree.path().join("deps").join(LIBRARY), b"").unwrap();
        let p = prepare(&cmd, &cfg, &env_of(&[]), Some(tree.path())).unwrap();
        assert_eq!(p.library, std::fs::canonicalize(tree.path().join("deps").join(LIBRARY)).unwrap());
        // A relative data_dir becomes absolute: the workload may change directory.
        cfg.cupti.socket = PathBuf::from("cupti.sock");
        cfg.data_dir = PathBuf::from("strand-data");
        let p = prepare(&cmd, &cfg, &env_of(&[]), Some(&bin)).unwrap();
        assert_eq!(p.socket, std::env::current_dir().unwrap().join("strand-data/cupti.sock"));
    }

    #[test]
    fn problems_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        let cmd = vec![OsString::from("true")];
        let e = prepare(&cmd, &cfg, &env_of(&[]), Some(dir.path())).unwrap_err().to_string();
        if !Path::new("/usr/lib/strand").join(LIBRARY).exists()
            && !Path::new("/usr/local/lib/strand").join(LIBRARY).exists()
        {
            assert!(e.contains("libstrand_inject.so not found") && e.contains("STRAND_INJECT_LIB"), "{e}");
        }
        let e = prepare(&cmd, &cfg, &env_of(&[("STRAND_INJECT_LIB", "/nonexistent/lib.so")]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/lib.so") && e.contains("not a file"), "{e}");
        let lib = dir.path().join(LIBRARY);
        std::fs::write(&lib, b"").unwrap();
        let lib_s = lib.display().to_string();
        let e = prepare(
            &cmd,
            &cfg,
            &env_of(&[("STRAND_INJECT_LIB", &lib_s), ("CUDA_INJECTION64_PATH", "/opt/other/libinj.so")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("already set") && e.contains("/opt/other/libinj.so"), "{e}");
        let e = prepare(&[], &cfg, &env_of(&[("STRAND_INJECT_LIB", &lib_s)]), None).unwrap_err().to_string();
        assert!(e.contains("nothing to run"), "{e}");
        let off = Config { cupti: crate::cupti::CuptiConfig { enabled: false, ..Default::default() }, ..cfg.clone() };
        let p = prepare(&cmd, &off, &env_of(&[("STRAND_INJECT_LIB", &lib_s)]), None).unwrap();
        assert!(p.notes[0].contains("cupti.enabled is false"), "{:?}", p.notes);
        assert_eq!(p.library, std::fs::canonicalize(&lib).unwrap());
    }
}
