//! strand-cli: the `strand` command line. It owns every flag ([`args`]),
//! parses them once into the libraries' typed options, and stays thin.
//!
//! Three binaries share it, so that a short offline command never loads
//! what it does not run: `strand` runs `import` and `postmortem` itself
//! (strand-offline: no DataFusion, no async runtime, no network stack) and
//! hands `serve` to `strand-collector` and `query`/`report` to
//! `strand-fleet`, installed next to it, with the same arguments.

pub mod args;
pub mod offline;

use std::path::PathBuf;

/// Logs to stderr, without colours when stderr is not a terminal.
pub fn init_logging() {
    tracing_subscriber::fmt()
        // Ballista's client logs every job at info: a report is twelve.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRAND_LOG")
                .unwrap_or_else(|_| "info,ballista=warn,ballista_core=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The path of a sibling binary (`strand-fleet`, `strand-collector`).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find the strand executable: {e}"))?;
    let dir = exe.parent().ok_or_else(|| anyhow::anyhow!("{} has no directory", exe.display()))?;
    Ok(dir.join(name))
}

/// Replaces this process with the sibling binary `name`, given this
/// process's own arguments; returns only on failure.
pub fn exec_sibling(name: &str) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let path = match sibling(name) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let err = std::process::Command::new(&path).args(std::env::args_os().skip(1)).exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "this command runs in {name}, which is not installed next to strand (looked for {}): install both from the same build",
            path.display()
        )
    } else {
        anyhow::anyhow!("cannot run {}: {err}", path.display())
    }
}

/// Prints an error the ripgrep way (`{:#}`: the context chain on one line)
/// and turns the result into the exit code.
pub fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs an async command on a multi-thread runtime (network, DataFusion).
#[cfg(any(feature = "fleet", feature = "service"))]
pub fn on_runtime(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(command)
}
