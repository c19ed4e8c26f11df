//! strand-agent: the per-node daemon (see README.md and DESIGN.md).

mod config;
mod context;
mod cupti;
mod shutdown;
mod sink;
mod wrap;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "strand-agent", version, about = "Per-node GPU profiling agent: where the FLOPs went")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent (the default).
    Run(RunArgs),
    /// Print which sources work on this host, and why not.
    Check(RunArgs),
    /// Run a command with the CUPTI injection library pointed at this agent.
    Wrap(WrapArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(short, long, env = "STRAND_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for Parquet batches (overrides `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Prometheus listen address (overrides `metrics.listen`); "" disables.
    #[arg(long)]
    pub metrics_listen: Option<String>,
}

#[derive(Args, Debug)]
pub struct WrapArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The command to run, after `--`.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run(args)) => println!("run {args:?}"),
        None => println!("run {:?}", cli.run),
        Some(Command::Check(args)) => println!("check {args:?}"),
        Some(Command::Wrap(args)) => println!("wrap {args:?}"),
    }
    ExitCode::SUCCESS
}
