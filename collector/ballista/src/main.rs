//! `strand-ballista scheduler|executor`: the processes of a Ballista cluster
//! for `strand report stranded --engine ballista://HOST:PORT`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strand_ballista::{ExecutorOptions, SchedulerOptions};

#[derive(Parser, Debug)]
#[command(name = "strand-ballista", version, about = "A Ballista 55 scheduler or executor for strand's fleet report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The scheduler: clients send it plans, executors pull tasks from it.
    Scheduler {
        /// Address of its gRPC service.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// Host name executors and clients reach it by.
        #[arg(long, default_value = "localhost")]
        external_host: String,
    },
    /// An executor: reads the dataset's files and runs the plan's tasks.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, default_value = "localhost:50050", value_parser = host_port)]
        scheduler: (String, u16),
        /// Address it binds.
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// Host name the scheduler and clients fetch results from (default: the bind address).
        #[arg(long)]
        external_host: Option<String>,
        /// Arrow Flight port (results and shuffles).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks run at once (default: the cores).
        #[arg(long)]
        concurrent_tasks: Option<usize>,
        /// Shuffle files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<String>,
        /// Memory pool of all its tasks in bytes; above it they spill to --work-dir.
        #[arg(long)]
        memory_limit: Option<u64>,
    },
}

/// `HOST:PORT`, parsed once.
fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    let port = port.parse().map_err(|_| format!("{s:?}: `{port}` is not a port"))?;
    if host.is_empty() {
        return Err(format!("{s:?} names no host"));
    }
    Ok((host.to_string(), port))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_ansi(false).with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Ballista's own binaries run deep plans on 32 MiB stacks.
        .thread_stack_size(32 * 1024 * 1024)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strand-ballista: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Scheduler { bind, external_host } => {
                strand_ballista::scheduler(SchedulerOptions { bind, external_host }).await
            }
            Command::Executor {
                scheduler,
                bind_host,
                external_host,
                port,
                grpc_port,
                concurrent_tasks,
                work_dir,
                memory_limit,
            } => {
                let (scheduler_host, scheduler_port) = scheduler;
                strand_ballista::executor(ExecutorOptions {
                    bind_host,
                    external_host,
                    port,
                    grpc_port,
                    scheduler_host,
                    scheduler_port,
                    concurrent_tasks,
                    work_dir,
                    memory_limit,
                })
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-ballista: {e}");
            ExitCode::FAILURE
        }
    }
}
