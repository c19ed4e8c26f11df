//! `strand import kineto`: PyTorch profiler traces as the tables every
//! door writes, in the Hive layout the agent and the collector write
//! (`<out>/<table>/date=YYYY-MM-DD/cluster_dir=<c>/node_dir=<n>/<batch-id>.parquet`):
//! the raw rows (`kernel_events`, `nccl_calls` with their collective
//! identity, `cuda_sync_calls`, `steps`) and the `windows` the agent's
//! `WindowBuilder` makes of them, with exact sync stalls across the ranks
//! imported together. An imported multi-rank run is fleet data: `strand
//! report stranded` reads it like the agents'.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use strand_kernels::{Backend, Reducer};
use strand_schemas::comm_kernels::CommKernels;
use strand_schemas::hive::write_partitioned;
use strand_schemas::{KernelSummary, Window};

use crate::kineto::{KinetoOptions, KinetoTrace};
use crate::run::{self, RunOptions};

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub traces: Vec<PathBuf>,
    /// Output dataset directory (created if missing).
    pub out: PathBuf,
    /// Cluster name written into every row.
    pub cluster: String,
    /// Node name for the (single) trace; default: each trace's file name.
    pub node: Option<String>,
    /// Job id written into every row.
    pub job: Option<String>,
    /// Keep only the GPU records Holistic Trace Analysis analyses.
    pub hta_scope: bool,
    /// Which kernels are communication (the built-in table and the user's patterns).
    pub comm_kernels: Arc<CommKernels>,
    /// The longest single JSON value of a trace (`None`: the default, 64 MiB).
    pub max_json_value: Option<usize>,
    /// Window length of the `windows` rows (the fleet's grid: the agents' `windows.period`).
    pub window_ns: i64,
    pub launch_gap_ns: i64,
    pub backend: Backend,
}

/// What one imported trace held.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub file: PathBuf,
    pub node: String,
    pub rank: Option<i32>,
    pub world_size: Option<i32>,
    /// CUDA device → product name.
    pub gpu_names: BTreeMap<i32, String>,
    pub kernels: usize,
    pub nccl: usize,
    pub syncs: usize,
    pub steps: usize,
    /// `windows` rows written for the trace's GPUs.
    pub windows: usize,
}

/// The batch id of a trace's files: its file name, so importing the same
/// trace again replaces its files.
fn batch_of(node: &str) -> String {
    format!("kineto-{}", strand_schemas::hive::escape(node))
}

/// Writes the rows of one trace.
fn write_trace(out: &std::path::Path, cluster: &str, t: &KinetoTrace) -> anyhow::Result<()> {
    let batch = batch_of(&t.node);
    write_partitioned(out, cluster, &t.node, &batch, &t.kernels(), |k| k.start_ns)?;
    write_partitioned(out, cluster, &t.node, &batch, &t.nccl, |c| c.enter_ns)?;
    write_partitioned(out, cluster, &t.node, &batch, &t.syncs, |s| s.enter_ns)?;
    write_partitioned(out, cluster, &t.node, &batch, &t.steps, |s| s.start_ns)?;
    Ok(())
}

/// Imports every trace into `opts.out`, one trace in memory at a time, then
/// the windows of all of them (the ranks' collectives matched together).
pub fn import_kineto(opts: &ImportOptions) -> anyhow::Result<Vec<ImportSummary>> {
    let reducer = Arc::new(Reducer::new(opts.backend)?);
    let run_opts = RunOptions {
        inputs: opts.traces.clone(),
        job: None,
        window_ns: Some(opts.window_ns),
        launch_gap_ns: opts.launch_gap_ns,
        lateness_ns: None,
        sample_period_ns: 1_000_000_000,
        kineto: KinetoOptions {
            cluster: opts.cluster.clone(),
            node: opts.node.clone(),
            job_id: opts.job.clone(),
            hta_scope: opts.hta_scope,
            comm_kernels: opts.comm_kernels.clone(),
            max_value_bytes: opts.max_json_value,
        },
        flops_per_step: None,
        dtype: None,
        gpu_name: None,
        peaks: Default::default(),
        progress: false,
        comm_kernels: opts.comm_kernels.clone(),
    };
    let mut out = Vec::new();
    let run = run::read(&run_opts, &reducer, |t| {
        write_trace(&opts.out, &opts.cluster, t)?;
        out.push(ImportSummary {
            file: t.file.clone(),
            node: t.node.clone(),
            rank: t.rank,
            world_size: t.world_size,
            gpu_names: t
                .gpu_names
                .iter()
                .filter(|(d, _)| t.devices.contains(d))
                .map(|(d, n)| (*d, n.clone()))
                .collect(),
            kernels: t.kernel_count(),
            nccl: t.nccl.len(),
            syncs: t.syncs.len(),
            steps: t.steps.len(),
            windows: 0,
        });
        Ok(())
    })?;
    let mut by_node: HashMap<Arc<str>, Vec<Window>> = HashMap::new();
    for w in run.windows {
        by_node.entry(w.node.clone()).or_default().push(w);
    }
    let mut summaries: HashMap<Arc<str>, Vec<KernelSummary>> = HashMap::new();
    for k in run.kernel_summaries {
        summaries.entry(k.node.clone()).or_default().push(k);
    }
    for s in &mut out {
        if let Some(ws) = by_node.get(s.node.as_str()) {
            write_partitioned(&opts.out, &opts.cluster, &s.node, &batch_of(&s.node), ws, |w| w.start_ns)?;
            s.windows = ws.len();
        }
        if let Some(ks) = summaries.get(s.node.as_str()) {
            write_partitioned(&opts.out, &opts.cluster, &s.node, &batch_of(&s.node), ks, |k| k.start_ns)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(traces: Vec<PathBuf>, out: PathBuf) -> ImportOptions {
        ImportOptions {
            traces,
            out,
            cluster: "lab/a".into(),
            node: None,
            job: Some("j1".into()),
            hta_scope: false,
            comm_kernels: Default::default(),
            max_json_value: None,
            window_ns: 10_000_000_000,
            launch_gap_ns: 50_000,
            backend: Backend::Cpu,
        }
    }

    #[test]
    fn kineto_import_writes_readable_hive_partitions_with_windows_and_reimport_replaces() {
        let data = crate::tests_support::kineto_dir();
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(
            vec![data.join("alexnet_single_gpu.json.gz"), data.join("nccl_2rank_a100_rank0.json.gz")],
            tmp.path().to_path_buf(),
        );
        let s = import_kineto(&opts).unwrap();
        let s2 = import_kineto(&opts).unwrap();
        assert_eq!(s.iter().map(|x| x.kernels).collect::<Vec<_>>(), s2.iter().map(|x| x.kernels).collect::<Vec<_>>());
        let f = tmp.path().join(
            "kernel_events/date=2023-09-27/cluster_dir=lab%2Fa/node_dir=alexnet_single_gpu/kineto-alexnet_single_gpu.parquet",
        );
        let rows = strand_schemas::read_file::<strand_schemas::KernelEvent>(&f).unwrap();
        assert_eq!(rows.len(), s[0].kernels, "re-importing replaced the file instead of adding one");
        assert!(
            rows.iter().all(|k| k.job_id.as_deref() == Some("j1") && &*k.cluster == "lab/a" && k.source == "kineto")
        );
        assert_eq!(s[1].gpu_names.get(&0).map(|n| n.as_str()), Some("NVIDIA A100-PG509-200"));
        let calls = strand_schemas::read_file::<strand_schemas::NcclCall>(
            &tmp.path().join("nccl_calls/date=2024-05-23/cluster_dir=lab%2Fa/node_dir=nccl_2rank_a100_rank0/kineto-nccl_2rank_a100_rank0.parquet"),
        )
        .unwrap();
        assert_eq!(calls.len(), s[1].nccl);
        // Windows, on the 10 s grid, split by the trace's kernel records and adding up.
        let w = strand_schemas::read_file::<Window>(&tmp.path().join(
            "windows/date=2023-09-27/cluster_dir=lab%2Fa/node_dir=alexnet_single_gpu/kineto-alexnet_single_gpu.parquet",
        ))
        .unwrap();
        assert_eq!(w.len(), s[0].windows);
        assert!(!w.is_empty());
        for x in &w {
            assert_eq!(x.split_source.as_deref(), Some("kernels"));
            assert_eq!(x.start_ns / 10_000_000_000, (x.end_ns - 1) / 10_000_000_000, "a window lies in one grid cell");
            let sum =
                x.compute_ns.unwrap() + x.comm_exposed_ns.unwrap() + x.memcpy_exposed_ns.unwrap() + x.idle_ns.unwrap();
            assert_eq!(sum, x.end_ns - x.start_ns);
        }
    }

    #[test]
    fn two_traces_that_would_be_one_node_are_refused_by_name() {
        let data = crate::tests_support::kineto_dir();
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("other");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(data.join("alexnet_single_gpu.json.gz"), copy.join("alexnet_single_gpu.json.gz")).unwrap();
        let opts = options(
            vec![data.join("alexnet_single_gpu.json.gz"), copy.join("alexnet_single_gpu.json.gz")],
            tmp.path().join("out"),
        );
        let err = format!("{:#}", import_kineto(&opts).unwrap_err());
        assert!(err.contains("would both be node \"alexnet_single_gpu\""), "{err}");
        assert!(!tmp.path().join("out").exists(), "nothing written before the refusal");
    }
}
