//! strand-agent: the per-node daemon (see README.md and DESIGN.md).

mod check;
mod config;
mod context;
mod cupti;
mod ebpf;
mod gpu_metrics;
mod infiniband;
mod kubelet;
mod live;
mod markers;
mod metrics;
mod nccl_join;
mod nvml;
mod procstat;
mod run;
mod ship_requests;
mod shutdown;
mod sink;
mod source;
mod spool;
mod systemd;
mod uploader;
mod wrap;
mod writer;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use config::Config;

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
    Run,
    /// Print which parts of which sources run on this host, and why not
    /// (by starting them and undoing it); fails when an enabled one cannot.
    Check,
    /// Run a command with the CUPTI injection library pointed at this agent.
    Wrap(WrapArgs),
    /// Ship one job's full kernel_events to the collector (they stay on the
    /// node by default): what the data directory keeps of it and what comes,
    /// until `--stop`. The running agent picks the request up within seconds.
    /// Without a job, lists the requests.
    ShipKernelEvents(ShipArgs),
}

#[derive(Args, Debug)]
pub struct ShipArgs {
    /// The job id, as the agent records it (`STRAND_JOB_ID`, `SLURM_JOB_ID`,
    /// the SLURM job or Kubernetes pod UID of its cgroup, or `job_id`).
    pub job: Option<String>,
    /// Stop shipping this job's kernel_events (what is shipped stays shipped).
    #[arg(long, requires = "job")]
    pub stop: bool,
}

/// Options of every subcommand; they may come before or after it.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(short, long, env = "STRAND_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for Parquet batches (overrides `data_dir`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Prometheus listen address (overrides `metrics.listen`); "" disables.
    #[arg(long, global = true)]
    pub metrics_listen: Option<String>,
    /// Cluster name (overrides `cluster`).
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// Collector URL (overrides `collector.url`).
    #[arg(long, global = true)]
    pub collector: Option<String>,
    /// Simulate N GPUs instead of reading NVML (demos and benchmarks).
    #[arg(long, value_name = "N", hide = true, global = true)]
    pub simulate_gpus: Option<u32>,
    /// Replay recorded NVML samples instead of reading NVML (tests).
    #[arg(long, value_name = "FILE", hide = true, global = true)]
    pub nvml_replay: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WrapArgs {
    /// The command to run, after `--`.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

impl RunArgs {
    /// Defaults, then the file, then flags; validated.
    fn config(&self) -> Result<Config, config::ConfigError> {
        let mut cfg = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let flag = |message: String| config::ConfigError { source_name: "command line".into(), message };
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(m) = &self.metrics_listen {
            cfg.metrics.listen = m.clone();
        }
        if let Some(c) = &self.cluster {
            cfg.cluster = c.clone();
        }
        if let Some(u) = &self.collector {
            cfg.collector.url = Some(u.clone());
        }
        cfg.validate().map_err(flag)?;
        Ok(cfg)
    }

    fn options(&self) -> run::RunOptions {
        run::RunOptions { simulate_gpus: self.simulate_gpus, nvml_replay: self.nvml_replay.clone() }
    }
}

/// `strand-agent ship-kernel-events`: edits the request file the running
/// agent reads (`ship_requests`), and says what will happen.
fn ship_kernel_events(cfg: &Config, args: &ShipArgs) -> ExitCode {
    let requests = ship_requests::ShipRequests::in_data_dir(&cfg.data_dir);
    let Some(job) = &args.job else {
        return match requests.read() {
            Ok(jobs) if jobs.is_empty() => {
                println!("no job's kernel_events are requested ({})", requests.path().display());
                ExitCode::SUCCESS
            }
            Ok(jobs) => {
                jobs.iter().for_each(|j| println!("{j}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("strand-agent: {e}");
                ExitCode::FAILURE
            }
        };
    };
    if cfg.collector.url.is_none() && !args.stop {
        eprintln!(
            "strand-agent: no collector is configured (collector.url): kernel_events stay in {}; nothing to ship them to",
            cfg.data_dir.display()
        );
        return ExitCode::from(2);
    }
    match requests.set(job, !args.stop) {
        Ok(changed) => {
            let what = match (args.stop, changed) {
                (false, true) => "will ship",
                (false, false) => "was already asked to ship",
                (true, true) => "no longer ships",
                (true, false) => "was not asked to ship",
            };
            println!("the agent {what} the full kernel_events of job {job} ({})", requests.path().display());
            if cfg.collector.kernel_events && !args.stop {
                println!("(collector.kernel_events = true: it ships every job's kernel_events anyway)");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strand-agent: cannot record the request in {}: {e}", requests.path().display());
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("STRAND_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let args = cli.run;
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strand-agent: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        None | Some(Command::Run) => {}
        Some(Command::Check) => return check::report(&check::probe(&cfg)),
        Some(Command::ShipKernelEvents(s)) => return ship_kernel_events(&cfg, &s),
        // Execs the command; returns only when it could not be started.
        Some(Command::Wrap(w)) => {
            return match wrap::run(w, &cfg) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("strand-agent wrap: {e:#}");
                    ExitCode::from(127)
                }
            };
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strand-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(cfg, args.options())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
