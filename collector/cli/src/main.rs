//! `strand`: the offline tools, and the door to the collector and the fleet
//! report (crate docs: `strand_cli`).

use clap::Parser;
use strand_cli::args::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    strand_cli::init_logging();
    strand_cli::exit(match cli.command {
        Command::Import(cmd) => strand_cli::offline::import(cmd),
        Command::Postmortem(args) => strand_cli::offline::postmortem(args),
        Command::Export(cmd) => strand_cli::offline::export(cmd),
        other => Err(strand_cli::exec_sibling(other.binary())),
    })
}
