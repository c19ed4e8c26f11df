//! What every source needs to stamp its rows: cluster, node, the job of a
//! process, and the NVML index of a GPU UUID.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Shared, read-mostly context of one agent.
#[derive(Debug)]
pub struct SourceContext {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    /// Which kernels are communication (config `comm_kernels` and the built-in table).
    pub comm_kernels: Arc<strand_schemas::comm_kernels::CommKernels>,
    static_job: Option<String>,
    proc_root: std::path::PathBuf,
    jobs: Mutex<HashMap<i32, (Option<String>, Instant)>>,
    gpus: RwLock<HashMap<String, i32>>,
    gpu_pids: Mutex<HashMap<i32, Instant>>,
    /// Kubernetes containers holding each GPU (UUID), from the kubelet.
    pods: RwLock<HashMap<String, crate::gpu_metrics::PodRef>>,
}

/// A pid's job is looked up again after this long (pids are reused).
const JOB_TTL: Duration = Duration::from_secs(30);
/// Bound on the job cache; it is cleared when full.
const JOB_CACHE_MAX: usize = 8192;
/// A process not seen on a GPU for this long is no longer a GPU process.
const GPU_PID_TTL: Duration = Duration::from_secs(30);

impl SourceContext {
    pub fn new(cluster: &str, node: &str, static_job: Option<String>) -> Self {
        Self::with_proc_root(cluster, node, static_job, "/proc")
    }

    /// `proc_root` is `/proc` except in tests.
    pub fn with_proc_root(
        cluster: &str,
        node: &str,
        static_job: Option<String>,
        proc_root: impl Into<std::path::PathBuf>,
    ) -> Self {
        Self {
            cluster: Arc::from(cluster),
            node: Arc::from(node),
            comm_kernels: Arc::default(),
            static_job,
            proc_root: proc_root.into(),
            jobs: Mutex::new(HashMap::new()),
            gpus: RwLock::new(HashMap::new()),
            gpu_pids: Mutex::new(HashMap::new()),
            pods: RwLock::new(HashMap::new()),
        }
    }

    /// The same context classifying kernels with `comm_kernels`.
    pub fn with_comm_kernels(mut self, comm_kernels: Arc<strand_schemas::comm_kernels::CommKernels>) -> Self {
        self.comm_kernels = comm_kernels;
        self
    }

    /// The job a process belongs to, in order of precedence: `STRAND_JOB_ID`
    /// or `SLURM_JOB_ID` in its environment, a SLURM (`job_<id>`) or Kubernetes
    /// (`pod<uid>`) cgroup, the agent's configured `job_id`.
    pub fn job_of(&self, pid: i32) -> Option<String> {
        let now = Instant::now();
        if let Ok(cache) = self.jobs.lock()
            && let Some((job, at)) = cache.get(&pid)
            && now.duration_since(*at) < JOB_TTL
        {
            return job.clone();
        }
        let job = self.resolve_job(pid);
        if let Ok(mut cache) = self.jobs.lock() {
            if cache.len() >= JOB_CACHE_MAX {
                cache.clear();
            }
            cache.insert(pid, (job.clone(), now));
        }
        job
    }

    fn resolve_job(&self, pid: i32) -> Option<String> {
        let dir = self.proc_root.join(pid.to_string());
        if let Ok(env) = std::fs::read(dir.join("environ")) {
            for key in ["STRAND_JOB_ID=", "SLURM_JOB_ID="] {
                if let Some(v) = env.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(key.as_bytes()))
                    && !v.is_empty()
                {
                    return Some(String::from_utf8_lossy(v).into_owned());
                }
            }
        }
        if let Ok(cgroup) = std::fs::read_to_string(dir.join("cgroup"))
            && let Some(job) = job_from_cgroup(&cgroup)
        {
            return Some(job);
        }
        self.static_job.clone()
    }

    /// Records the NVML index of each GPU UUID (called by the NVML source).
    pub fn set_gpus(&self, uuids: impl IntoIterator<Item = (String, i32)>) {
        if let Ok(mut g) = self.gpus.write() {
            g.extend(uuids);
        }
    }

    /// UUIDs of the GPUs NVML found.
    pub fn gpu_uuids(&self) -> Vec<String> {
        self.gpus.read().map(|g| g.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn gpu_index_of(&self, uuid: &str) -> Option<i32> {
        self.gpus.read().ok()?.get(uuid).copied()
    }

    /// Replaces the Kubernetes assignment of GPUs (UUID → container).
    pub fn set_pods(&self, pods: HashMap<String, crate::gpu_metrics::PodRef>) {
        if let Ok(mut p) = self.pods.write() {
            *p = pods;
        }
    }

    /// The Kubernetes container holding GPU `uuid`, when the kubelet says.
    pub fn pod_of(&self, uuid: &str) -> Option<crate::gpu_metrics::PodRef> {
        self.pods.read().ok()?.get(uuid).cloned()
    }

    /// Records processes seen using a GPU (NVML process lists, CUPTI clients).
    pub fn note_gpu_pids(&self, pids: &[i32]) {
        if let Ok(mut m) = self.gpu_pids.lock() {
            let now = Instant::now();
            for &p in pids {
                m.insert(p, now);
            }
        }
    }

    /// Processes seen using a GPU in the last 30 s, sorted.
    pub fn gpu_pids(&self) -> Vec<i32> {
        let Ok(mut m) = self.gpu_pids.lock() else { return Vec::new() };
        m.retain(|_, seen| seen.elapsed() < GPU_PID_TTL);
        let mut v: Vec<i32> = m.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// Finds a SLURM job id (`…/job_1234/…`) or a Kubernetes pod UID
/// (`…kubepods…pod<uid>…`, with `_` or `-` separators) in `/proc/<pid>/cgroup`.
pub fn job_from_cgroup(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let path = line.rsplit(':').next().unwrap_or("");
        for part in path.split('/') {
            if let Some(id) = part.strip_prefix("job_")
                && !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
            {
                return Some(id.to_string());
            }
        }
        if path.contains("kubepods") {
            for part in path.split('/') {
                let part = part.trim_end_matches(".slice");
                if let Some(idx) = part.rfind("pod") {
                    let uid = part[idx + 3..].replace('_', "-");
                    if uid.len() == 36 {
                        return Some(format!("pod-{uid}"));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_and_kubernetes_cgroups_name_the_job() {
        assert_eq!(
            job_from_cgroup("0::/system.slice/slurmstepd.scope/job_81234/step_0/user/task_0\n"),
            Some("81234".into())
        );
        assert_eq!(
            job_from_cgroup(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a9e_1b2c_4d5e_8f90_0123456789ab.slice/cri-containerd-abc.scope\n"
            ),
            Some("pod-3f1c2a9e-1b2c-4d5e-8f90-0123456789ab".into())
        );
        assert_eq!(
            job_from_cgroup("12:memory:/kubepods/besteffort/pod3f1c2a9e-1b2c-4d5e-8f90-0123456789ab/0123abcd\n"),
            Some("pod-3f1c2a9e-1b2c-4d5e-8f90-0123456789ab".into())
        );
        assert_eq!(job_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n"), None);
    }

    #[test]
    fn environment_beats_cgroup_beats_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("42");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("cgroup"), "0::/slurm/uid_0/job_777/step_0\n").unwrap();
        let ctx = SourceContext::with_proc_root("c", "n", Some("static".into()), dir.path());
        assert_eq!(ctx.job_of(42).as_deref(), Some("777"));
        assert_eq!(ctx.job_of(43).as_deref(), Some("static"), "unknown pid falls back to config");
        let ctx = SourceContext::with_proc_root("c", "n", None, dir.path());
        std::fs::write(p.join("environ"), b"PATH=/bin\0STRAND_JOB_ID=llama-70b-run3\0SLURM_JOB_ID=777\0").unwrap();
        assert_eq!(ctx.job_of(42).as_deref(), Some("llama-70b-run3"));
    }
}
