//! Efficiency findings of one job, from the accounting alone: hollow busy
//! (reported busy while few SMs work) and MFU far below the tensor-pipe
//! estimate. Definitions and thresholds: docs/findings.md.

use serde_json::json;

use super::{Draft, JobTime, Scope, Thresholds, secs, sql_str};

/// hollow_busy: a large share of the job's reported-busy time had few SMs
/// working (DESIGN §3, ghost compute of kind hollow busy). Needs GPM (SM
/// active); without it nothing is judged.
pub fn hollow_busy(jobs: &[JobTime], th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    for j in jobs {
        let t = &j.time;
        let busy = t.int("reported_busy_ns") as f64;
        if t.sm_active().is_none() || busy * 1e-9 < th.min_job_gpu_seconds {
            continue;
        }
        let hollow = t.int("hollow_busy_ns") as f64;
        let share = hollow / busy;
        if share < th.hollow_busy_share {
            continue;
        }
        out.push(Draft {
            code: "efficiency",
            kind: "hollow_busy",
            scope_kind: "job",
            scope: Scope { cluster: j.cluster.clone(), job_id: Some(j.job_id.clone()), ..Scope::default() },
            start_ns: j.first_ns,
            end_ns: j.last_ns,
            severity: if share >= 2.0 * th.hollow_busy_share { "critical" } else { "warning" },
            summary: format!(
                "Job {}: {:.0}% of the time its GPUs reported busy, few SMs worked (reported utilization {:.0}%, SM active {:.0}%): {:.1} GPU-h of hollow busy.",
                j.job_id,
                share * 100.0,
                t.reported_utilization().unwrap_or(0.0) * 100.0,
                t.sm_active().unwrap_or(0.0) * 100.0,
                hollow * 1e-9 / 3600.0
            ),
            figures: json!({
                "hollow_share_of_reported_busy": share, "hollow_busy_gpu_s": secs(hollow), "reported_busy_gpu_s": secs(busy),
                "reported_utilization": t.reported_utilization(), "sm_active": t.sm_active(), "gpus": j.gpus,
            }),
            evidence: json!({
                "query": format!(
                    "SELECT node, gpu_index, sum(hollow_busy_ns), sum(reported_busy_ns), avg(sm_active_ratio) FROM windows \
                     WHERE job_id = {} GROUP BY node, gpu_index", sql_str(&j.job_id)),
                "source": "windows (NVML utilization and GPM SM active)",
            }),
            gpu_seconds: Some(hollow * 1e-9),
        });
    }
    out
}

/// mfu_below_estimate: the MFU from the job's model FLOPs is far below what
/// its tensor pipes did (the tensor-pipe estimate): the tensor cores do work
/// the model FLOPs do not count (recomputation, padding, a wrong FLOPs
/// figure). Needs both: markers (or job config) and GPM.
pub fn mfu_below_estimate(jobs: &[JobTime], th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    for j in jobs {
        let (Some(mfu), Some(est)) = (j.time.mfu(), j.time.tensor_estimate()) else { continue };
        if j.time.powered_ns() as f64 * 1e-9 < th.min_job_gpu_seconds
            || est <= 0.0
            || mfu >= th.mfu_estimate_ratio * est
        {
            continue;
        }
        out.push(Draft {
            code: "efficiency",
            kind: "mfu_below_estimate",
            scope_kind: "job",
            scope: Scope { cluster: j.cluster.clone(), job_id: Some(j.job_id.clone()), ..Scope::default() },
            start_ns: j.first_ns,
            end_ns: j.last_ns,
            severity: "warning",
            summary: format!(
                "Job {}: MFU {:.0}% is {:.0}% of the tensor-pipe estimate {:.0}%: the tensor cores do work the model FLOPs do not count (activation recomputation, padding), or the FLOPs per step given to strand are too low.",
                j.job_id,
                mfu * 100.0,
                mfu / est * 100.0,
                est * 100.0
            ),
            figures: json!({ "mfu": mfu, "tensor_estimate": est, "ratio": mfu / est, "gpus": j.gpus }),
            evidence: json!({
                "query": format!(
                    "SELECT start_ns, node, gpu_index, mfu, tensor_estimate, model_flops FROM windows WHERE job_id = {} ORDER BY start_ns",
                    sql_str(&j.job_id)),
            }),
            gpu_seconds: None,
        });
    }
    out
}
