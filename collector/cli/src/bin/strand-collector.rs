//! `strand-collector`: `strand serve`, the network service (strand_collector).

use clap::Parser;
use strand_cli::args::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    strand_cli::init_logging();
    strand_cli::exit(match cli.command {
        Command::Serve(a) => strand_cli::on_runtime(strand_collector::run(strand_collector::ServeOptions {
            config: a.config,
            listen: a.listen,
            data: a.data,
        })),
        Command::Compact(a) => {
            strand_cli::on_runtime(strand_collector::compact_now(strand_collector::CompactRunOptions {
                config: a.config,
                data: a.data,
                after: a.after,
                cleanup_delay: a.cleanup_delay,
            }))
        }
        other => Err(strand_cli::exec_sibling(other.binary())),
    })
}
