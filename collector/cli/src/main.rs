//! `strand`: the fleet collector and the offline tools.
//!
//! - `serve`: accept agents' Parquet batches and store them (Hive layout).
//! - `query`: SQL over a dataset (DataFusion).
//! - `import`: convert PyTorch profiler (Kineto) traces to strand tables.
//! - `postmortem`: explain one training run (HTML, Markdown, JSON).
//! - `report`: fleet reports (the stranded-capacity report).

mod dataset;
mod fleet;
mod import;
mod postmortem;
mod query;
mod report;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "strand", version, about = "strand: GPU fleet collector, queries, postmortems and reports")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the collector: accept batches from agents and store them.
    Serve(serve::ServeArgs),
    /// Run SQL over a dataset.
    Query(query::QueryArgs),
    /// Convert traces from other tools into strand tables.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Explain one training run: where every GPU-second went.
    Postmortem(postmortem::PostmortemArgs),
    /// Fleet reports.
    #[command(subcommand)]
    Report(Box<report::ReportCommand>),
    /// Write a simulated fleet dataset (tests, benchmarks, demos).
    #[command(hide = true)]
    Simulate(Box<fleet::sim::SimulateArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRAND_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        // CPU work on files: no async runtime (its threads and code would
        // only add start time and resident pages to a short command).
        Command::Import(cmd) => import::run(cmd),
        Command::Postmortem(args) => postmortem::run(args),
        Command::Simulate(args) => fleet::sim::run(*args),
        Command::Serve(args) => on_runtime(serve::run(args)),
        Command::Query(args) => on_runtime(query::run(args)),
        Command::Report(cmd) => on_runtime(report::run(*cmd)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, ripgrep-style.
            eprintln!("strand: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an async command on a multi-thread runtime (network, DataFusion).
fn on_runtime(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(command)
}
