//! ai.17 — fault-recovery (DESIGN §3): checkpoint cost, restarts, wasted
//! progress, goodput (ETTR) with its badput breakdown, recovery collapse.
//! The definitions are those of docs/goodput.md, implemented exactly here:
//! every instant of a job's allocation gets one label, by priority
//! checkpoint_save > checkpoint_restore > recovery > wasted_progress >
//! startup > productive > other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::{Draft, Scope, Thresholds, secs, sql_str};

/// One job's GPUs in one window cell (`job_timeline.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobWindow {
    pub cluster: Arc<str>,
    pub job_id: Arc<str>,
    pub wstart: i64,
    pub gpus: i64,
    pub nodes: i64,
    pub powered_ns: i64,
    /// Time split by kernel records (the rest by NVML or nothing).
    pub kernels_ns: i64,
    pub compute_ns: i64,
    /// Exposed communication and copies (kernel records).
    pub other_busy_ns: i64,
    /// Busy by kernel records, or by NVML where only it measured.
    pub busy_ns: i64,
    pub idle_ns: i64,
    pub idle_no_process_ns: i64,
}

/// Storage I/O of one job's processes in one window cell (`job_io.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobIo {
    pub cluster: Arc<str>,
    pub job_id: Arc<str>,
    pub wstart: i64,
    pub write_bytes: i64,
    pub read_bytes: i64,
}

/// A step or checkpoint phase of a job, as rank 0 saw it (`job_phases.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobPhase {
    pub cluster: Arc<str>,
    pub job_id: Arc<str>,
    pub phase: Arc<str>,
    pub step: Option<i64>,
    pub source: Arc<str>,
    pub pid: Option<i64>,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// A failure signal of a job (`job_failures.sql`): `exit`, `xid` or `nccl_abort`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFailure {
    pub cluster: Arc<str>,
    pub job_id: Arc<str>,
    pub node: Arc<str>,
    pub ts_ns: i64,
    pub kind: Arc<str>,
    pub code: Option<i64>,
    pub signal: Option<i64>,
}

/// What the recovery detectors read.
pub struct RecoveryInput<'a> {
    pub windows: &'a [JobWindow],
    pub io: &'a [JobIo],
    pub phases: &'a [JobPhase],
    pub failures: &'a [JobFailure],
    /// The window cell of `windows` and `io`.
    pub window_ns: i64,
}

/// Seconds of a job's wall time per badput category (docs/goodput.md).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Badput {
    pub startup_s: f64,
    pub checkpoint_save_s: f64,
    pub checkpoint_restore_s: f64,
    pub wasted_progress_s: f64,
    pub recovery_s: f64,
    pub other_s: f64,
}

/// One failure of a job and what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub ts_ns: i64,
    /// Signals seen: `exit`, `xid`, `nccl_abort`, with code/signal.
    pub signals: Vec<String>,
    pub restarted: bool,
    /// Failure → first window of the job with kernels again ("first kernel").
    pub downtime_s: Option<f64>,
    /// Where the restarted run resumed: end of the resumed step, or of the last checkpoint.
    pub resumed_from_ns: i64,
    /// How the resume point was found: `restore_marker`, `checkpoint`, `none`.
    pub resume_basis: &'static str,
    /// Wall time between the resume point and the failure.
    pub wasted_s: f64,
    /// Compute GPU-seconds in that time: ghost compute, kind wasted progress.
    pub wasted_gpu_s: f64,
}

/// The recovery figures of one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecovery {
    pub cluster: Arc<str>,
    pub job_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub wall_s: f64,
    pub gpus: i64,
    pub nodes: i64,
    pub productive_s: f64,
    pub badput: Badput,
    /// Goodput / effective training time ratio: productive_s / wall_s; null
    /// without a step source (no step markers, inferred or traced steps, and
    /// no kernel records).
    pub goodput: Option<f64>,
    /// What productive time was measured from: `steps` (step phases),
    /// `kernels` (windows with kernels), or null.
    pub step_source: Option<&'static str>,
    pub checkpoint_source: &'static str,
    pub checkpoints: usize,
    pub checkpoint_cost_s: Option<f64>,
    pub checkpoint_interval_s: Option<f64>,
    pub checkpoint_share: f64,
    pub failures: Vec<Failure>,
    pub mttr_s: Option<f64>,
    pub mtbf_s: Option<f64>,
    /// `job` (its own failures), `fleet` (the fleet's rate per node-hour), or null.
    pub mtbf_source: Option<&'static str>,
    /// Failures the MTBF rests on.
    pub mtbf_failures: usize,
    /// Young: sqrt(2 · checkpoint cost · MTBF).
    pub young_interval_s: Option<f64>,
    pub wasted_gpu_s: f64,
}

type Iv = (i64, i64);
/// A phase with the step it holds, when known.
type Phase = (Option<i64>, Iv);

/// Sorts and merges intervals.
fn merge(mut v: Vec<Iv>) -> Vec<Iv> {
    v.retain(|(a, b)| b > a);
    v.sort_unstable();
    let mut out: Vec<Iv> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(l) if a <= l.1 => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn contains(v: &[Iv], t: i64) -> bool {
    let i = v.partition_point(|iv| iv.1 <= t);
    i < v.len() && v[i].0 <= t
}

fn overlap(a: Iv, b: Iv) -> i64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0)
}

#[derive(Default, Clone)]
struct Win {
    gpus: i64,
    nodes: i64,
    powered: i64,
    kernels: i64,
    compute: i64,
    busy: i64,
    idle: i64,
    idle_np: i64,
    write: i64,
    read: i64,
}

#[derive(Default)]
struct JobData {
    windows: BTreeMap<i64, Win>,
    steps: Vec<(i64, Iv)>,
    saves: Vec<Phase>,
    restores: Vec<Phase>,
    signals: Vec<(i64, String)>,
}

/// Computes every job's recovery figures and the ai.17 findings.
pub fn analyze(input: &RecoveryInput, th: &Thresholds) -> (Vec<JobRecovery>, Vec<Draft>) {
    let window_ns = input.window_ns.max(1);
    let mut jobs: BTreeMap<(Arc<str>, Arc<str>), JobData> = BTreeMap::new();
    for x in input.windows {
        let win = jobs.entry((x.cluster.clone(), x.job_id.clone())).or_default().windows.entry(x.wstart).or_default();
        win.gpus += x.gpus;
        win.nodes += x.nodes;
        win.powered += x.powered_ns;
        win.kernels += x.kernels_ns;
        win.compute += x.compute_ns;
        win.busy += x.busy_ns;
        win.idle += x.idle_ns;
        win.idle_np += x.idle_no_process_ns;
    }
    for x in input.io {
        if let Some(job) = jobs.get_mut(&(x.cluster.clone(), x.job_id.clone()))
            && let Some(win) = job.windows.get_mut(&x.wstart)
        {
            win.write += x.write_bytes;
            win.read += x.read_bytes;
        }
    }
    for p in input.phases {
        let Some(job) = jobs.get_mut(&(p.cluster.clone(), p.job_id.clone())) else { continue };
        match &*p.phase {
            "step" => job.steps.push((p.step.unwrap_or(-1), (p.start_ns, p.end_ns))),
            "checkpoint_save" => job.saves.push((p.step, (p.start_ns, p.end_ns))),
            "checkpoint_restore" => job.restores.push((p.step, (p.start_ns, p.end_ns))),
            _ => {}
        }
    }
    for f in input.failures {
        let Some(job) = jobs.get_mut(&(f.cluster.clone(), f.job_id.clone())) else { continue };
        let what = match (&*f.kind, f.signal) {
            ("exit", Some(s)) => format!("exit signal {s}"),
            ("exit", None) => format!("exit code {}", f.code.unwrap_or(0)),
            ("xid", _) => format!("xid {}", f.code.unwrap_or(0)),
            (k, _) => k.to_string(),
        };
        job.signals.push((f.ts_ns, what));
    }

    let mut out = Vec::new();
    for ((cluster, job_id), mut d) in jobs {
        out.push(job_figures(cluster, &job_id, &mut d, window_ns, th));
    }
    // Young's formula needs a failure rate: the job's own, else the fleet's per node-hour.
    let fleet_failures: usize = out.iter().map(|j| j.failures.len()).sum();
    let node_seconds: f64 = out.iter().map(|j| j.wall_s * j.nodes.max(1) as f64).sum();
    for j in &mut out {
        let (mtbf, src, n) = if !j.failures.is_empty() {
            (Some(j.wall_s / j.failures.len() as f64), Some("job"), j.failures.len())
        } else if fleet_failures > 0 && node_seconds > 0.0 {
            (Some(node_seconds / fleet_failures as f64 / j.nodes.max(1) as f64), Some("fleet"), fleet_failures)
        } else {
            (None, None, 0)
        };
        j.mtbf_s = mtbf;
        j.mtbf_source = src;
        j.mtbf_failures = n;
        j.young_interval_s = match (j.checkpoint_cost_s, mtbf) {
            (Some(c), Some(m)) if c > 0.0 => Some((2.0 * c * m).sqrt()),
            _ => None,
        };
    }
    let drafts = out.iter().flat_map(|j| drafts(j, th)).collect();
    (out, drafts)
}

fn job_figures(cluster: Arc<str>, job_id: &str, d: &mut JobData, w: i64, th: &Thresholds) -> JobRecovery {
    let first = d.windows.keys().next().copied().unwrap_or(0);
    let last = d.windows.keys().next_back().copied().unwrap_or(0) + w;
    let alloc = (first, last);
    // Windows in which the job's GPUs were busy (kernel records, else NVML).
    let active: Vec<Iv> = merge(d.windows.iter().filter(|(_, x)| x.busy > 0).map(|(t, _)| (*t, t + w)).collect());
    // Steps: step phases, else the windows with kernels; without either,
    // productive time is unknown (never 0).
    d.steps.sort_by_key(|s| s.1);
    let kernel_active: Vec<Iv> =
        merge(d.windows.iter().filter(|(_, x)| x.kernels > 0 && x.compute > 0).map(|(t, _)| (*t, t + w)).collect());
    let (steps, step_source): (Vec<Iv>, Option<&'static str>) = if !d.steps.is_empty() {
        (merge(d.steps.iter().map(|s| s.1).collect()), Some("steps"))
    } else if d.windows.values().any(|x| x.kernels > 0) {
        (kernel_active, Some("kernels"))
    } else {
        (Vec::new(), None)
    };
    // Checkpoints: markers, else GPUs idle while the job's processes write (save) or read (restore).
    let detect = |bytes: fn(&Win) -> i64| -> Vec<Iv> {
        merge(
            d.windows
                .iter()
                .filter(|(_, x)| {
                    x.powered > 0
                        && x.idle as f64 >= th.detect_idle_share * x.powered as f64
                        && (x.idle_np as f64) < 0.5 * x.powered as f64
                        && bytes(x) as f64 >= th.detect_io_bytes_per_gpu_s * x.gpus.max(1) as f64 * w as f64 * 1e-9
                })
                .map(|(t, _)| (*t, t + w))
                .collect(),
        )
    };
    let (checkpoint_source, saves_iv, saves_step): (&'static str, Vec<Iv>, Vec<Phase>) = if !d.saves.is_empty() {
        d.saves.sort_by_key(|s| s.1);
        ("marker", merge(d.saves.iter().map(|s| s.1).collect()), d.saves.clone())
    } else {
        let v = detect(|x| x.write);
        let tagged: Vec<Phase> = v.iter().map(|iv| (None, *iv)).collect();
        (if v.is_empty() { "none" } else { "inferred" }, v, tagged)
    };
    let (restores_iv, restores_step): (Vec<Iv>, Vec<Phase>) = if !d.restores.is_empty() {
        d.restores.sort_by_key(|s| s.1);
        (merge(d.restores.iter().map(|s| s.1).collect()), d.restores.clone())
    } else {
        let v = detect(|x| x.read);
        (v.clone(), v.into_iter().map(|iv| (None, iv)).collect())
    };
    // Failures: signals of the job closer than failure_merge_ns are one failure.
    d.signals.sort();
    let mut groups: Vec<(i64, Vec<String>)> = Vec::new();
    for (t, s) in &d.signals {
        match groups.last_mut() {
            Some(g) if t - g.0 <= th.failure_merge_ns => {
                if !g.1.contains(s) {
                    g.1.push(s.clone());
                }
            }
            _ => groups.push((*t, vec![s.clone()])),
        }
    }
    let step_end = |k: i64, before: i64| d.steps.iter().filter(|s| s.0 == k && s.1.1 <= before).map(|s| s.1.1).max();
    let mut failures = Vec::new();
    let mut recovery = Vec::new();
    let mut wasted = Vec::new();
    for (tf, signals) in groups {
        let first_kernel = active.iter().find(|a| a.0 >= tf).map(|a| a.0);
        // Recovery ends at the next step; without a step source, at the next busy window.
        let next_step =
            if step_source.is_some() { steps.iter().find(|s| s.0 >= tf).map(|s| s.0) } else { first_kernel };
        recovery.push((tf, next_step.unwrap_or(alloc.1)));
        // Resume point: the step the restart resumed from, else the last checkpoint before the failure.
        let restore = restores_step.iter().find(|r| r.1.0 >= tf);
        let last_save = saves_step.iter().rfind(|s| s.1.1 <= tf);
        let (resume, basis) = if let Some(t) = restore.and_then(|r| r.0).and_then(|k| step_end(k, tf)) {
            (t, "restore_marker")
        } else if let Some(s) = last_save {
            (s.0.and_then(|k| step_end(k, tf)).unwrap_or(s.1.1), "checkpoint")
        } else {
            (steps.first().map_or(alloc.0, |s| s.0).min(tf), "none")
        };
        let lost = (resume.min(tf), tf);
        wasted.push(lost);
        let wasted_gpu_s =
            d.windows.iter().map(|(t, x)| x.compute as f64 * overlap((*t, t + w), lost) as f64 / w as f64).sum::<f64>()
                * 1e-9;
        failures.push(Failure {
            ts_ns: tf,
            signals,
            restarted: first_kernel.is_some(),
            downtime_s: first_kernel.map(|k| (k - tf) as f64 * 1e-9),
            resumed_from_ns: lost.0,
            resume_basis: basis,
            // The wasted-progress label of docs/goodput.md: the lost span less the saves inside it.
            wasted_s: ((lost.1 - lost.0) - saves_iv.iter().map(|s| overlap(*s, lost)).sum::<i64>()) as f64 * 1e-9,
            wasted_gpu_s,
        });
    }
    // Startup lasts until the first step; without a step source it is unknown (left as other).
    let startup =
        if step_source.is_some() { vec![(alloc.0, steps.first().map_or(alloc.1, |s| s.0))] } else { Vec::new() };
    let lists = [saves_iv.clone(), restores_iv.clone(), merge(recovery), merge(wasted), merge(startup), steps.clone()];
    // Label every elementary segment of the allocation (docs/goodput.md).
    let mut cuts: Vec<i64> = vec![alloc.0, alloc.1];
    for l in &lists {
        for iv in l {
            cuts.extend([iv.0.clamp(alloc.0, alloc.1), iv.1.clamp(alloc.0, alloc.1)]);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut label_ns = [0i64; 7];
    for s in cuts.windows(2) {
        let label = lists.iter().position(|l| contains(l, s[0])).unwrap_or(6);
        label_ns[label] += s[1] - s[0];
    }
    let sec = |i: usize| label_ns[i] as f64 * 1e-9;
    let badput = Badput {
        checkpoint_save_s: sec(0),
        checkpoint_restore_s: sec(1),
        recovery_s: sec(2),
        wasted_progress_s: sec(3),
        startup_s: sec(4),
        other_s: sec(6),
    };
    let wall_s = (alloc.1 - alloc.0) as f64 * 1e-9;
    let productive_s = sec(5);
    let downtimes: Vec<f64> = failures.iter().filter_map(|f| f.downtime_s).collect();
    let save_durations: Vec<f64> = saves_iv.iter().map(|s| (s.1 - s.0) as f64 * 1e-9).collect();
    let interval = (saves_iv.len() >= 2)
        .then(|| (saves_iv[saves_iv.len() - 1].0 - saves_iv[0].0) as f64 * 1e-9 / (saves_iv.len() - 1) as f64);
    JobRecovery {
        cluster,
        job_id: job_id.to_string(),
        start_ns: alloc.0,
        end_ns: alloc.1,
        wall_s,
        gpus: d.windows.values().map(|x| x.gpus).max().unwrap_or(0),
        nodes: d.windows.values().map(|x| x.nodes).max().unwrap_or(0),
        productive_s,
        goodput: (step_source.is_some() && wall_s > 0.0).then(|| productive_s / wall_s),
        step_source,
        checkpoint_source,
        checkpoints: saves_iv.len(),
        checkpoint_cost_s: (!save_durations.is_empty())
            .then(|| save_durations.iter().sum::<f64>() / save_durations.len() as f64),
        checkpoint_interval_s: interval,
        checkpoint_share: if wall_s > 0.0 { badput.checkpoint_save_s / wall_s } else { 0.0 },
        badput,
        wasted_gpu_s: failures.iter().map(|f| f.wasted_gpu_s).sum(),
        mttr_s: (!downtimes.is_empty()).then(|| downtimes.iter().sum::<f64>() / downtimes.len() as f64),
        failures,
        mtbf_s: None,
        mtbf_source: None,
        mtbf_failures: 0,
        young_interval_s: None,
    }
}

fn job_scope(j: &JobRecovery) -> Scope {
    Scope { cluster: j.cluster.clone(), job_id: Some(j.job_id.clone()), ..Scope::default() }
}

fn drafts(j: &JobRecovery, th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    let gpu_s = |s: f64| s * j.gpus.max(1) as f64;
    let judged = gpu_s(j.wall_s) >= th.min_job_gpu_seconds;
    let q_job = sql_str(&j.job_id);
    // checkpoint_cost
    if j.checkpoints > 0 {
        let young_off = match (j.checkpoint_interval_s, j.young_interval_s) {
            // A rate from one or two failures is too uncertain to call an interval wrong.
            (Some(i), Some(y)) if y > 0.0 && j.mtbf_failures >= th.young_min_failures => {
                i / y > th.young_ratio || i / y < 1.0 / th.young_ratio
            }
            _ => false,
        };
        if judged && (j.checkpoint_share >= th.checkpoint_share || young_off) {
            out.push(Draft {
                code: "ai.17",
                kind: "checkpoint_cost",
                scope_kind: "job",
                scope: job_scope(j),
                start_ns: j.start_ns,
                end_ns: j.end_ns,
                severity: if j.checkpoint_share >= 2.0 * th.checkpoint_share { "critical" } else { "warning" },
                summary: format!(
                    "Job {} spends {:.1}% of its wall time saving checkpoints ({} saves of {:.0} s{}); Young's formula suggests an interval of {}.",
                    j.job_id,
                    j.checkpoint_share * 100.0,
                    j.checkpoints,
                    j.checkpoint_cost_s.unwrap_or(0.0),
                    j.checkpoint_interval_s.map_or(String::new(), |i| format!(" every {:.0} s", i)),
                    j.young_interval_s.map_or("n/a (no failure observed)".into(), |y| format!("{y:.0} s"))
                ),
                figures: json!({
                    "checkpoint_share": j.checkpoint_share, "checkpoints": j.checkpoints, "checkpoint_cost_s": j.checkpoint_cost_s,
                    "interval_s": j.checkpoint_interval_s, "young_interval_s": j.young_interval_s, "mtbf_s": j.mtbf_s,
                    "mtbf_source": j.mtbf_source, "mtbf_failures": j.mtbf_failures, "source": j.checkpoint_source,
                }),
                evidence: json!({
                    "query": if j.checkpoint_source == "marker" {
                        format!("SELECT phase, step, start_ns, end_ns FROM steps WHERE job_id = {q_job} AND phase = 'checkpoint_save' ORDER BY start_ns")
                    } else {
                        format!("SELECT ts_ns, node, pid, write_bytes FROM process_samples WHERE job_id = {q_job} ORDER BY ts_ns")
                    },
                    "young": "T_opt = sqrt(2 · checkpoint cost · MTBF)",
                }),
                gpu_seconds: Some(gpu_s(j.badput.checkpoint_save_s)),
            });
        }
    }
    // restart and wasted_progress, one per failure
    for f in &j.failures {
        let scope = Scope { detail: Some(f.ts_ns.to_string()), ..job_scope(j) };
        out.push(Draft {
            code: "ai.17",
            kind: "restart",
            scope_kind: "job",
            scope: scope.clone(),
            start_ns: f.ts_ns,
            end_ns: f.downtime_s.map_or(j.end_ns, |d| f.ts_ns + (d * 1e9) as i64),
            severity: if f.restarted { "warning" } else { "critical" },
            summary: if let Some(d) = f.downtime_s {
                format!("Job {} failed ({}) and ran kernels again {:.0} s later.", j.job_id, f.signals.join(", "), d)
            } else {
                format!("Job {} failed ({}) and did not run again in the range.", j.job_id, f.signals.join(", "))
            },
            figures: json!({
                "failure_ns": f.ts_ns, "signals": f.signals, "restarted": f.restarted, "downtime_s": f.downtime_s,
                "mttr_s": j.mttr_s, "failures_in_range": j.failures.len(),
            }),
            evidence: json!({
                "query": format!(
                    "SELECT ts_ns, node, pid, kind, exit_code, signal FROM process_events WHERE job_id = {q_job} ORDER BY ts_ns; \
                     SELECT ts_ns, node, gpu_index, xid FROM gpu_events WHERE job_id = {q_job} AND kind = 'xid'"),
            }),
            gpu_seconds: f.downtime_s.map(gpu_s),
        });
        if f.wasted_gpu_s > 0.0 {
            out.push(Draft {
                code: "ai.17",
                kind: "wasted_progress",
                scope_kind: "job",
                scope,
                start_ns: f.resumed_from_ns,
                end_ns: f.ts_ns,
                severity: "warning",
                summary: format!(
                    "Job {} lost {:.0} s of training ({:.0} GPU-s of compute) between its last checkpoint and the failure.",
                    j.job_id, f.wasted_s, f.wasted_gpu_s
                ),
                figures: json!({ "wasted_s": f.wasted_s, "wasted_gpu_s": f.wasted_gpu_s, "resumed_from_ns": f.resumed_from_ns, "basis": f.resume_basis }),
                evidence: json!({
                    "query": format!("SELECT phase, step, start_ns, end_ns FROM steps WHERE job_id = {q_job} AND end_ns <= {} ORDER BY start_ns DESC LIMIT 20", f.ts_ns),
                }),
                gpu_seconds: Some(f.wasted_gpu_s),
            });
        }
    }
    // goodput: only where a step source measured productive time.
    if let Some(goodput) = j.goodput
        && judged
        && (goodput < th.goodput_warning || !j.failures.is_empty())
    {
        out.push(Draft {
            code: "ai.17",
            kind: "goodput",
            scope_kind: "job",
            scope: job_scope(j),
            start_ns: j.start_ns,
            end_ns: j.end_ns,
            severity: if goodput < th.goodput_critical {
                "critical"
            } else if goodput < th.goodput_warning {
                "warning"
            } else {
                "info"
            },
            summary: format!(
                "Job {}: effective training time ratio {:.1}% (badput: startup {:.0} s, checkpoint save {:.0} s, restore {:.0} s, wasted progress {:.0} s, recovery {:.0} s, other {:.0} s).",
                j.job_id,
                goodput * 100.0,
                j.badput.startup_s,
                j.badput.checkpoint_save_s,
                j.badput.checkpoint_restore_s,
                j.badput.wasted_progress_s,
                j.badput.recovery_s,
                j.badput.other_s
            ),
            figures: json!({ "goodput": goodput, "wall_s": j.wall_s, "productive_s": j.productive_s, "badput": j.badput, "step_source": j.step_source }),
            evidence: json!({ "definition": "docs/goodput.md", "query": format!("SELECT * FROM windows WHERE job_id = {q_job} ORDER BY start_ns") }),
            gpu_seconds: Some(gpu_s(j.wall_s - j.productive_s)),
        });
    }
    // recovery_collapse
    let recovery =
        j.badput.checkpoint_save_s + j.badput.checkpoint_restore_s + j.badput.recovery_s + j.badput.wasted_progress_s;
    let share = if j.wall_s > 0.0 { recovery / j.wall_s } else { 0.0 };
    let cascade = j
        .failures
        .windows(th.cascade_failures.max(1))
        .any(|w| w[w.len() - 1].ts_ns - w[0].ts_ns <= th.cascade_window_ns)
        && j.failures.len() >= th.cascade_failures;
    if judged && (share >= th.recovery_collapse_share || cascade) {
        out.push(Draft {
            code: "ai.17",
            kind: "recovery_collapse",
            scope_kind: "job",
            scope: job_scope(j),
            start_ns: j.start_ns,
            end_ns: j.end_ns,
            severity: "critical",
            summary: format!(
                "Job {}: resilience costs {:.0}% of wall time (checkpoints, restores, recovery, lost work){}.",
                j.job_id,
                share * 100.0,
                if cascade { format!("; {} failures cascade", j.failures.len()) } else { String::new() }
            ),
            figures: json!({ "recovery_share": share, "failures": j.failures.len(), "cascade": cascade, "recovery_s": secs(recovery * 1e9) }),
            evidence: json!({ "definition": "docs/findings.md#recovery_collapse" }),
            gpu_seconds: Some(gpu_s(recovery)),
        });
    }
    out
}

/// Wasted-progress GPU-seconds per (cluster, job), for the report's ghost column.
pub fn wasted_by_job(jobs: &[JobRecovery]) -> HashMap<(Arc<str>, String), f64> {
    jobs.iter().map(|j| ((j.cluster.clone(), j.job_id.clone()), j.wasted_gpu_s)).collect()
}

/// The recovery inputs of one run, rolled up in Rust from its rows exactly
/// as `collector/fleet/sql/job_{timeline,phases,failures,io}.sql` roll them
/// up in an engine (the fleet's tests compare the two on the same data).
pub mod rollup {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use strand_schemas::{GpuEvent, NcclCall, ProcessEvent, ProcessSample, Step, Window};

    use super::{JobFailure, JobIo, JobPhase, JobWindow};

    fn cell(t: i64, w: i64) -> i64 {
        t - t % w.max(1)
    }

    /// `job_timeline.sql`: every job's GPUs per window cell.
    pub fn job_windows(windows: &[Window], window_ns: i64) -> Vec<JobWindow> {
        type Acc = (JobWindow, BTreeSet<Arc<str>>);
        let mut by: BTreeMap<(Arc<str>, Arc<str>, i64), Acc> = BTreeMap::new();
        for w in windows {
            let Some(job) = w.job_id.as_deref() else { continue };
            let job: Arc<str> = Arc::from(job);
            let c = cell(w.start_ns, window_ns);
            let (x, nodes) = by.entry((w.cluster.clone(), job.clone(), c)).or_insert_with(|| {
                (
                    JobWindow {
                        cluster: w.cluster.clone(),
                        job_id: job,
                        wstart: c,
                        gpus: 0,
                        nodes: 0,
                        powered_ns: 0,
                        kernels_ns: 0,
                        compute_ns: 0,
                        other_busy_ns: 0,
                        busy_ns: 0,
                        idle_ns: 0,
                        idle_no_process_ns: 0,
                    },
                    BTreeSet::new(),
                )
            });
            let len = w.end_ns - w.start_ns;
            let z = |v: Option<i64>| v.unwrap_or(0);
            nodes.insert(w.node.clone());
            x.gpus += 1;
            x.nodes = nodes.len() as i64;
            x.powered_ns += len;
            let kernels = w.split_source.as_deref() == Some("kernels");
            x.kernels_ns += if kernels { len } else { 0 };
            x.compute_ns += z(w.compute_ns);
            x.other_busy_ns += z(w.comm_exposed_ns) + z(w.memcpy_exposed_ns);
            x.busy_ns += match w.split_source.as_deref() {
                Some("kernels") => z(w.compute_ns) + z(w.comm_exposed_ns) + z(w.memcpy_exposed_ns),
                Some("nvml") => z(w.reported_busy_ns),
                _ => 0,
            };
            x.idle_ns += z(w.idle_ns);
            x.idle_no_process_ns += z(w.idle_no_process_ns);
        }
        by.into_values().map(|(x, _)| x).collect()
    }

    /// `job_phases.sql`: steps and checkpoints as rank 0 saw them, one row
    /// per (phase, step, source, process).
    pub fn job_phases(steps: &[Step]) -> Vec<JobPhase> {
        type Key = (Arc<str>, Arc<str>, String, Option<i64>, String, Option<i32>);
        let mut by: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
        for s in steps.iter().filter(|s| s.rank.is_none_or(|r| r == 0)) {
            let Some(job) = s.job_id.as_deref() else { continue };
            let e = by
                .entry((s.cluster.clone(), Arc::from(job), s.phase.clone(), s.step, s.source.clone(), s.pid))
                .or_insert((s.start_ns, s.end_ns));
            e.0 = e.0.min(s.start_ns);
            e.1 = e.1.max(s.end_ns);
        }
        by.into_iter()
            .map(|((cluster, job_id, phase, step, source, pid), (start_ns, end_ns))| JobPhase {
                cluster,
                job_id,
                phase: Arc::from(phase.as_str()),
                step,
                source: Arc::from(source.as_str()),
                pid: pid.map(i64::from),
                start_ns,
                end_ns,
            })
            .collect()
    }

    /// `job_failures.sql`: abnormal exits, XID errors, NCCL aborts.
    pub fn job_failures(processes: &[ProcessEvent], gpu_events: &[GpuEvent], calls: &[NcclCall]) -> Vec<JobFailure> {
        let mut out = Vec::new();
        let f = |cluster: &Arc<str>, job: &str, node: &Arc<str>, ts_ns, kind: &str, code, signal| JobFailure {
            cluster: cluster.clone(),
            job_id: Arc::from(job),
            node: node.clone(),
            ts_ns,
            kind: Arc::from(kind),
            code,
            signal,
        };
        for p in processes {
            if let Some(job) = p.job_id.as_deref()
                && p.kind == "exit"
                && (p.signal.is_some() || p.exit_code.unwrap_or(0) != 0)
            {
                out.push(f(
                    &p.cluster,
                    job,
                    &p.node,
                    p.ts_ns,
                    "exit",
                    Some(i64::from(p.exit_code.unwrap_or(0))),
                    p.signal.map(i64::from),
                ));
            }
        }
        for e in gpu_events {
            if let Some(job) = e.job_id.as_deref()
                && e.kind == "xid"
            {
                out.push(f(&e.cluster, job, &e.node, e.ts_ns, "xid", e.xid, None));
            }
        }
        for c in calls {
            if let Some(job) = c.job_id.as_deref()
                && c.op == "comm_abort"
            {
                out.push(f(&c.cluster, job, &c.node, c.enter_ns, "nccl_abort", Some(0), None));
            }
        }
        out
    }

    /// `job_io.sql`: storage I/O of every job's processes per window cell.
    pub fn job_io(samples: &[ProcessSample], window_ns: i64) -> Vec<JobIo> {
        type Key = (Arc<str>, Arc<str>, i64);
        let mut by: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
        for s in samples {
            let Some(job) = s.job_id.as_deref() else { continue };
            let e = by.entry((s.cluster.clone(), Arc::from(job), cell(s.ts_ns - 1, window_ns))).or_default();
            e.0 += s.write_bytes.unwrap_or(0);
            e.1 += s.read_bytes.unwrap_or(0);
        }
        by.into_iter()
            .map(|((cluster, job_id, wstart), (w, r))| JobIo { cluster, job_id, wstart, write_bytes: w, read_bytes: r })
            .collect()
    }
}
