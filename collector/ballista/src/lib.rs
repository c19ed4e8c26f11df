//! A Ballista scheduler or executor process, the same library code as
//! Apache DataFusion Ballista 55.0's own `ballista-scheduler` and
//! `ballista-executor` binaries, built against this workspace's DataFusion so
//! that a `strand` client and the cluster always plan with one version.
//! Either Ballista's own 55.0 binaries (or containers) or these serve
//! `strand report stranded --engine ballista://HOST:PORT` (docs/fleet-scale.md).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::object_store::{
    CustomObjectStoreRegistry, S3Options, session_config_with_s3_support, session_state_with_s3_support,
};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;

/// What can stop a scheduler or an executor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ballista scheduler on {addr}: {source}")]
    Scheduler { addr: SocketAddr, source: ballista_core::error::BallistaError },
    #[error("ballista executor on {host}:{port}: {source}")]
    Executor { host: String, port: u16, source: ballista_core::error::BallistaError },
}

/// A scheduler: where `strand` sends the report's plans.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address of its gRPC service (`ballista://HOST:PORT` of the clients).
    pub bind: SocketAddr,
    /// Host name the executors and clients reach it by.
    pub external_host: String,
}

/// An executor: runs the plan's tasks, reading the dataset's files itself.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Address it binds (Arrow Flight on `port`, gRPC on `grpc_port`).
    pub bind_host: String,
    /// Host name the scheduler and clients fetch results from.
    pub external_host: Option<String>,
    pub port: u16,
    pub grpc_port: u16,
    /// The scheduler's host and gRPC port.
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Tasks run at once (default: the cores).
    pub concurrent_tasks: Option<usize>,
    /// Shuffle files (default: a temporary directory).
    pub work_dir: Option<String>,
    /// Memory pool of all its tasks together, in bytes (sorts and
    /// aggregations spill to `work_dir` above it).
    pub memory_limit: Option<u64>,
}

/// Runs a scheduler until the process ends. Dataset URLs on S3 are read
/// with the usual `AWS_*` environment variables, as `strand` reads them.
pub async fn scheduler(opts: SchedulerOptions) -> Result<(), Error> {
    let err = |source| Error::Scheduler { addr: opts.bind, source };
    let config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        external_host: opts.external_host.clone(),
        ..SchedulerConfig::default()
    }
    .with_override_config_producer(Arc::new(session_config_with_s3_support))
    .with_override_session_builder(Arc::new(session_state_with_s3_support));
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(err)?;
    start_server(cluster, opts.bind, Arc::new(config)).await.map_err(err)
}

/// Runs an executor until the process ends; it waits up to a minute for its
/// scheduler to answer, so the two may start in either order.
pub async fn executor(opts: ExecutorOptions) -> Result<(), Error> {
    let mut config = ExecutorProcessConfig {
        bind_host: opts.bind_host.clone(),
        external_host: opts.external_host.clone(),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        scheduler_connect_timeout_seconds: 60,
        work_dir: opts.work_dir.clone(),
        memory_pool_size: opts.memory_limit,
        print_thread_info: false,
        ..ExecutorProcessConfig::default()
    };
    if let Some(n) = opts.concurrent_tasks {
        config.vcores = n.max(1);
    }
    config.override_config_producer = Some(Arc::new(session_config_with_s3_support));
    // Ballista's S3 runtime drops the work directory; spills go there.
    let work_dir = opts.work_dir.clone();
    config.override_runtime_producer = Some(Arc::new(move |session| {
        let s3 = session.options().extensions.get::<S3Options>().cloned().unwrap_or_default();
        let mut rt = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(CustomObjectStoreRegistry::new(s3)));
        if let Some(dir) = &work_dir {
            rt = rt.with_temp_file_path(dir);
        }
        rt.build_arc()
    }));
    start_executor_process(Arc::new(config)).await.map_err(|source| Error::Executor {
        host: opts.bind_host.clone(),
        port: opts.port,
        source,
    })
}
