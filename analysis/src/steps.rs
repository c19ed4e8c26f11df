//! Steps inferred from the period of NCCL calls (DESIGN §5.5: without
//! markers, steps are inferred from the periodicity of NCCL calls).
//!
//! A training step issues the same sequence of collectives every time. The
//! sequence of call *signatures* (communicator, operation, message size
//! class) of one rank is therefore periodic with L calls per step. Among the
//! periods that fit, the one whose boundaries fall on the largest gaps between
//! calls wins (a step ends with the optimizer and starts with the forward pass,
//! where no collective runs), and the smallest such period is taken so that
//! two steps are not mistaken for one. Each step then runs from the first call
//! of one period to the first call of the next: step *times* are exact, the
//! step's start is its first collective, not its first kernel.
//!
//! Rows say `source = "inferred"`; step numbers count from 0 within the input.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use strand_schemas::{NcclCall, Step};

use crate::collective::COLLECTIVE_OPS;

/// One call: host entry time and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPoint {
    pub time: i64,
    pub signature: u64,
}

/// The period found in a call sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub calls_per_step: usize,
    /// Index of the first call of the first whole step.
    pub phase: usize,
}

/// Share of signatures that must repeat one period later.
const MIN_MATCH: f64 = 0.9;
/// Calls looked at to find the period (the rest follow the template).
const MAX_DETECT: usize = 8192;

fn median(v: &mut [i64]) -> i64 {
    if v.is_empty() {
        return 0;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

/// Finds the period of a time-ordered call sequence; `None` when there are
/// fewer than three repetitions of any pattern.
pub fn find_period(points: &[CallPoint]) -> Option<Period> {
    let pts = &points[..points.len().min(MAX_DETECT)];
    let n = pts.len();
    if n < 4 {
        return None;
    }
    let gaps: Vec<i64> = (0..n).map(|i| if i == 0 { 0 } else { pts[i].time - pts[i - 1].time }).collect();
    let typical = median(&mut gaps[1..].to_vec()).max(1) as f64;
    let mut scored: Vec<(usize, usize, f64)> = Vec::new();
    for l in 1..=n / 3 {
        let same = (0..n - l).filter(|&i| pts[i].signature == pts[i + l].signature).count();
        if (same as f64) < MIN_MATCH * (n - l) as f64 {
            continue;
        }
        // Best phase: boundary gaps (the gap before each step's first call) largest.
        let mut best = (0usize, f64::MIN);
        for p in 0..l {
            let mut b: Vec<i64> = (p..n).step_by(l).filter(|&i| i >= 1).map(|i| gaps[i]).collect();
            let m = median(&mut b) as f64 / typical;
            if m > best.1 {
                best = (p, m);
            }
        }
        scored.push((l, best.0, best.1));
    }
    let top = scored.iter().map(|s| s.2).fold(f64::MIN, f64::max);
    let &(l, p, _) = scored.iter().find(|s| s.2 >= 0.8 * top)?;
    ((n - p) / l >= 2).then_some(Period { calls_per_step: l, phase: p })
}

/// Step boundaries (indices of each step's first call) of a sequence with
/// `period`: a step is emitted where the next L signatures follow the
/// template; elsewhere the walk re-synchronizes call by call.
pub fn boundaries(points: &[CallPoint], period: Period) -> Vec<usize> {
    let l = period.calls_per_step;
    let template: Vec<u64> = points[period.phase..period.phase + l].iter().map(|p| p.signature).collect();
    let fits = |i: usize| {
        i + l <= points.len()
            && (points[i..i + l].iter().zip(&template).filter(|(a, b)| a.signature == **b).count() as f64)
                >= MIN_MATCH * l as f64
            && points[i].signature == template[0]
    };
    let mut out = Vec::new();
    let mut i = period.phase;
    while i + l <= points.len() {
        if fits(i) {
            out.push(i);
            i += l;
        } else {
            i += 1;
        }
    }
    // The last boundary closes the last step only if a next period begins.
    if let Some(&last) = out.last()
        && last + l < points.len()
        && points[last + l].signature == template[0]
    {
        out.push(last + l);
    }
    out
}

fn signature(c: &NcclCall) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.comm_hash.hash(&mut h);
    c.comm_name.hash(&mut h);
    c.op.hash(&mut h);
    c.bytes.map(|b| 64 - (b.max(0) as u64).leading_zeros()).hash(&mut h);
    h.finish()
}

/// Infers `steps` rows for every process in `calls` (any order): one row per
/// step found, `source = "inferred"`.
pub fn infer_steps(calls: &[NcclCall]) -> Vec<Step> {
    let mut by_proc: HashMap<(Arc<str>, i32), Vec<&NcclCall>> = HashMap::new();
    for c in calls.iter().filter(|c| COLLECTIVE_OPS.contains(&c.op.as_str())) {
        by_proc.entry((c.node.clone(), c.pid)).or_default().push(c);
    }
    let mut keys: Vec<_> = by_proc.keys().cloned().collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let mut v = by_proc.remove(&key).unwrap_or_default();
        v.sort_by_key(|c| c.enter_ns);
        let points: Vec<CallPoint> =
            v.iter().map(|c| CallPoint { time: c.enter_ns, signature: signature(c) }).collect();
        let Some(period) = find_period(&points) else { continue };
        let b = boundaries(&points, period);
        let first = v[0];
        // The rank in the largest communicator is the rank in the job.
        let rank = v.iter().filter(|c| c.rank.is_some()).max_by_key(|c| c.nranks).and_then(|c| c.rank);
        for (k, w) in b.windows(2).enumerate() {
            out.push(Step {
                cluster: first.cluster.clone(),
                node: first.node.clone(),
                job_id: first.job_id.clone(),
                pid: Some(first.pid),
                rank,
                gpu_index: first.gpu_index,
                phase: "step".into(),
                step: Some(k as i64),
                start_ns: points[w[0]].time,
                end_ns: points[w[1]].time,
                model_flops: None,
                tokens: None,
                dtype: None,
                source: "inferred".into(),
            });
        }
    }
    out
}

/// Live step inference for the agent: feed NCCL calls as they arrive, poll
/// for finished steps. Each process keeps its last `max_calls` collective
/// calls; each step is emitted once. Processes that send markers should be
/// excluded with [`StepInferrer::has_markers`] (markers win).
#[derive(Debug)]
pub struct StepInferrer {
    max_calls: usize,
    procs: HashMap<(Arc<str>, i32), ProcCalls>,
}

#[derive(Debug, Default)]
struct ProcCalls {
    calls: std::collections::VecDeque<NcclCall>,
    /// Steps starting before this were emitted.
    emitted_until: i64,
    next_step: i64,
    markers: bool,
    new_calls: usize,
}

impl StepInferrer {
    pub fn new(max_calls: usize) -> Self {
        Self { max_calls: max_calls.max(16), procs: HashMap::new() }
    }

    /// Stops inferring for a process that sends step markers.
    pub fn has_markers(&mut self, node: &Arc<str>, pid: i32) {
        let p = self.procs.entry((node.clone(), pid)).or_default();
        p.markers = true;
        p.calls.clear();
    }

    pub fn push(&mut self, calls: &[NcclCall]) {
        for c in calls.iter().filter(|c| COLLECTIVE_OPS.contains(&c.op.as_str())) {
            let p = self.procs.entry((c.node.clone(), c.pid)).or_default();
            if p.markers {
                continue;
            }
            p.calls.push_back(c.clone());
            p.new_calls += 1;
            while p.calls.len() > self.max_calls {
                p.calls.pop_front();
            }
        }
    }

    /// Steps completed since the last poll (`source = "inferred"`).
    pub fn poll(&mut self) -> Vec<Step> {
        let mut out = Vec::new();
        for p in self.procs.values_mut().filter(|p| p.new_calls > 0 && !p.markers) {
            p.new_calls = 0;
            p.calls.make_contiguous().sort_by_key(|c| c.enter_ns);
            let calls: Vec<NcclCall> = p.calls.iter().cloned().collect();
            for mut s in infer_steps(&calls) {
                if s.start_ns < p.emitted_until {
                    continue;
                }
                s.step = Some(p.next_step);
                p.next_step += 1;
                p.emitted_until = s.end_ns;
                out.push(s);
            }
        }
        out.sort_by_key(|s| s.start_ns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_schemas::Table;

    /// `steps` steps of `pattern` (signature, offset from step start), step
    /// period `period`, with a little jitter.
    fn synth(steps: usize, period: i64, pattern: &[(u64, i64)], jitter: i64) -> Vec<CallPoint> {
        let mut rng = 0x2545F4914F6CDD1Du64;
        let mut out = Vec::new();
        for s in 0..steps {
            for &(sig, off) in pattern {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let j = (rng % (2 * jitter as u64 + 1)) as i64 - jitter;
                out.push(CallPoint { time: 1_000_000 + s as i64 * period + off + j, signature: sig });
            }
        }
        out
    }

    #[test]
    fn three_identical_allreduces_per_step_give_the_step_not_the_call() {
        // Backward: three identical bucket allreduces 2 ms apart; 100 ms steps.
        let pts = synth(20, 100_000_000, &[(7, 60_000_000), (7, 62_000_000), (7, 64_000_000)], 50_000);
        let p = find_period(&pts).unwrap();
        assert_eq!(p.calls_per_step, 3);
        let b = boundaries(&pts, p);
        assert_eq!(b.len(), 20, "{b:?}");
        for w in b.windows(2) {
            let dt = pts[w[1]].time - pts[w[0]].time;
            assert!((dt - 100_000_000).abs() <= 100_000, "step time {dt}");
        }
    }

    #[test]
    fn distinct_collectives_and_a_phase_in_the_middle() {
        // Pattern allgather, allgather, reducescatter starting mid-step; boundary gap is largest.
        let mut pts = synth(10, 50_000_000, &[(1, 0), (1, 5_000_000), (2, 10_000_000)], 10_000);
        pts.drain(..2); // the trace starts in the middle of a step
        let p = find_period(&pts).unwrap();
        assert_eq!(p.calls_per_step, 3);
        assert_eq!(pts[p.phase].signature, 1);
        assert_eq!(boundaries(&pts, p).len(), 9);
    }

    #[test]
    fn live_inference_emits_each_step_once() {
        let pts = synth(12, 100_000_000, &[(7, 60_000_000), (7, 62_000_000), (7, 64_000_000)], 10_000);
        let calls: Vec<NcclCall> = pts
            .iter()
            .map(|p| {
                let mut c = NcclCall::example(1);
                c.node = Arc::from("n");
                c.pid = 9;
                c.op = "allreduce".into();
                c.comm_hash = Some(1);
                c.bytes = Some(1 << 20);
                c.enter_ns = p.time;
                c
            })
            .collect();
        let mut inf = StepInferrer::new(4096);
        inf.push(&calls[..18]);
        let first = inf.poll();
        inf.push(&calls[18..]);
        let second = inf.poll();
        assert!(!first.is_empty() && !second.is_empty());
        let all: Vec<_> = first.iter().chain(&second).collect();
        assert_eq!(all.len(), 11, "12 periods give 11 whole steps, each once");
        for w in all.windows(2) {
            assert_eq!(w[0].end_ns, w[1].start_ns);
            assert_eq!(w[1].step, w[0].step.map(|s| s + 1));
        }
        assert!(all.iter().all(|s| s.source == "inferred"));
        inf.has_markers(&Arc::from("n"), 9);
        inf.push(&calls);
        assert!(inf.poll().is_empty(), "markers win");
    }

    #[test]
    fn too_few_calls_or_no_pattern_give_nothing() {
        assert_eq!(find_period(&synth(2, 1000, &[(1, 0), (2, 10)], 0)), None);
        let mut x = 88172645463325252u64;
        let noise: Vec<CallPoint> = (0..60)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                CallPoint { time: i * 1000, signature: x % 10 }
            })
            .collect();
        assert_eq!(find_period(&noise), None);
    }
}
