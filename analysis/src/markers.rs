//! Workload markers (DESIGN §5.5): the message format and the state that
//! turns begin/end messages into `steps` rows. The agent's socket source
//! (`agent/src/markers.rs`) feeds datagrams here; the Python client is
//! `python/strand_markers.py`.
//!
//! One JSON object per datagram, version 1:
//!
//! ```json
//! {"v": 1, "event": "step_begin", "step": 12, "pid": 4242, "rank": 0, "ts_ns": 1717000000000000000}
//! {"v": 1, "event": "step_end", "step": 12, "pid": 4242, "flops": 3.1e15, "tokens": 8192, "dtype": "bf16", "ts_ns": 1717000000420000000}
//! {"v": 1, "event": "checkpoint_begin", "kind": "save", "step": 12, "pid": 4242}
//! {"v": 1, "event": "checkpoint_end", "kind": "save", "step": 12, "pid": 4242}
//! {"v": 1, "event": "step", "step": 13, "pid": 4242, "start_ns": …, "end_ns": …, "flops": 3.1e15}
//! ```
//!
//! - `event`: `step_begin`, `step_end`, `checkpoint_begin`, `checkpoint_end`,
//!   or `step` (a whole step in one message, with `start_ns` and `end_ns`).
//! - `pid` (required): the process sending; `rank`, `gpu_uuid` or `gpu_index`
//!   (NVML index) say which GPU the rank uses, when the sender knows.
//! - `ts_ns`: UTC nanoseconds of the event; the receive time when absent.
//! - `flops`: model FLOPs of the step on this rank (on begin or end);
//!   `tokens`, `dtype` (`bf16`, `fp16`, `fp8`, `tf32`, `fp32`) optional.
//! - `kind` of a checkpoint: `save` (default) or `restore`.
//! - Unknown fields are ignored (newer clients); a newer `v` is refused.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use strand_schemas::Step;

/// Newest message version this build reads.
pub const MARKERS_VERSION: u32 = 1;
/// Largest datagram read; larger messages are refused.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// One marker message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Marker {
    #[serde(default = "one")]
    pub v: u32,
    pub event: String,
    pub pid: Option<i32>,
    pub step: Option<i64>,
    pub rank: Option<i32>,
    pub gpu_uuid: Option<String>,
    pub gpu_index: Option<i32>,
    pub job_id: Option<String>,
    pub ts_ns: Option<i64>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub flops: Option<f64>,
    pub tokens: Option<i64>,
    pub dtype: Option<String>,
    pub kind: Option<String>,
}

fn one() -> u32 {
    1
}

/// Why a message was refused (the agent counts and logs these, never fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    #[error("not a JSON marker object: {0}")]
    Json(String),
    #[error("marker version {0} is newer than version {MARKERS_VERSION} that this agent reads")]
    Version(u32),
    #[error("unknown marker event {0:?} (expected step_begin, step_end, step, checkpoint_begin, checkpoint_end)")]
    Event(String),
    #[error("marker {0:?} has no `pid`")]
    NoPid(String),
    #[error("marker `step` needs `start_ns` and `end_ns` with start ≤ end")]
    BadSpan,
    #[error("checkpoint kind {0:?} is not `save` or `restore`")]
    Kind(String),
    #[error("{0} for pid {1} without a matching begin")]
    Unmatched(String, i32),
    #[error("`flops` must be a finite number ≥ 0, got {0}")]
    Flops(String),
}

/// Where a process's rows go: filled by the caller (the agent's source
/// context resolves the job and the GPU index of a UUID).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    pub job_id: Option<String>,
    pub gpu_index: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Step,
    CheckpointSave,
    CheckpointRestore,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Step => "step",
            Phase::CheckpointSave => "checkpoint_save",
            Phase::CheckpointRestore => "checkpoint_restore",
        }
    }
}

#[derive(Debug, Clone)]
struct Open {
    marker: Marker,
    start_ns: i64,
    seq: u64,
}

/// Pairs begin and end messages per process and phase. Memory is bounded:
/// at most `max_open` phases are open; beyond that the oldest is dropped and
/// counted in `abandoned`.
#[derive(Debug)]
pub struct MarkerTracker {
    open: HashMap<(i32, Phase), Open>,
    max_open: usize,
    seq: u64,
    /// Begins never ended (replaced by a new begin, or evicted).
    pub abandoned: u64,
}

impl Default for MarkerTracker {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl MarkerTracker {
    pub fn new(max_open: usize) -> Self {
        Self { open: HashMap::new(), max_open: max_open.max(1), seq: 0, abandoned: 0 }
    }

    /// Parses one datagram.
    pub fn parse(msg: &[u8]) -> Result<Marker, MarkerError> {
        if msg.len() > MAX_MESSAGE_BYTES {
            return Err(MarkerError::Json(format!(
                "message of {} bytes is larger than {MAX_MESSAGE_BYTES}",
                msg.len()
            )));
        }
        let m: Marker = serde_json::from_slice(msg).map_err(|e| MarkerError::Json(e.to_string()))?;
        if m.v > MARKERS_VERSION {
            return Err(MarkerError::Version(m.v));
        }
        if let Some(f) = m.flops
            && !(f.is_finite() && f >= 0.0)
        {
            return Err(MarkerError::Flops(f.to_string()));
        }
        Ok(m)
    }

    /// Handles one datagram received at `received_ns`; returns the finished
    /// row when the message ends a phase. `stamp` resolves a process's
    /// cluster, node, job and GPU.
    pub fn handle(
        &mut self,
        msg: &[u8],
        received_ns: i64,
        stamp: impl Fn(&Marker) -> Stamp,
    ) -> Result<Option<Step>, MarkerError> {
        let m = Self::parse(msg)?;
        self.handle_marker(m, received_ns, stamp)
    }

    pub fn handle_marker(
        &mut self,
        m: Marker,
        received_ns: i64,
        stamp: impl Fn(&Marker) -> Stamp,
    ) -> Result<Option<Step>, MarkerError> {
        let pid = m.pid.ok_or_else(|| MarkerError::NoPid(m.event.clone()))?;
        let ts = m.ts_ns.unwrap_or(received_ns);
        let checkpoint_phase = |m: &Marker| match m.kind.as_deref() {
            None | Some("save") => Ok(Phase::CheckpointSave),
            Some("restore") => Ok(Phase::CheckpointRestore),
            Some(k) => Err(MarkerError::Kind(k.to_string())),
        };
        match m.event.as_str() {
            "step_begin" => {
                self.begin(pid, Phase::Step, m, ts);
                Ok(None)
            }
            "checkpoint_begin" => {
                let p = checkpoint_phase(&m)?;
                self.begin(pid, p, m, ts);
                Ok(None)
            }
            "step_end" => self.end(pid, Phase::Step, m, ts, &stamp).map(Some),
            "checkpoint_end" => {
                let p = checkpoint_phase(&m)?;
                self.end(pid, p, m, ts, &stamp).map(Some)
            }
            "step" => {
                let (Some(s), Some(e)) = (m.start_ns, m.end_ns) else { return Err(MarkerError::BadSpan) };
                if e < s {
                    return Err(MarkerError::BadSpan);
                }
                Ok(Some(row(Phase::Step, &m, s, e, &stamp(&m))))
            }
            other => Err(MarkerError::Event(other.to_string())),
        }
    }

    fn begin(&mut self, pid: i32, phase: Phase, m: Marker, ts: i64) {
        if self.open.len() >= self.max_open
            && !self.open.contains_key(&(pid, phase))
            && let Some(oldest) = self.open.iter().min_by_key(|(_, o)| o.seq).map(|(k, _)| *k)
        {
            self.open.remove(&oldest);
            self.abandoned += 1;
        }
        self.seq += 1;
        if self.open.insert((pid, phase), Open { marker: m, start_ns: ts, seq: self.seq }).is_some() {
            self.abandoned += 1;
        }
    }

    fn end(
        &mut self,
        pid: i32,
        phase: Phase,
        m: Marker,
        ts: i64,
        stamp: &impl Fn(&Marker) -> Stamp,
    ) -> Result<Step, MarkerError> {
        let open = self.open.remove(&(pid, phase)).ok_or_else(|| MarkerError::Unmatched(m.event.clone(), pid))?;
        // Fields given on the end message win over those of the begin.
        let b = &open.marker;
        let merged = Marker {
            v: m.v,
            event: m.event.clone(),
            pid: Some(pid),
            step: m.step.or(b.step),
            rank: m.rank.or(b.rank),
            gpu_uuid: m.gpu_uuid.clone().or_else(|| b.gpu_uuid.clone()),
            gpu_index: m.gpu_index.or(b.gpu_index),
            job_id: m.job_id.clone().or_else(|| b.job_id.clone()),
            ts_ns: None,
            start_ns: None,
            end_ns: None,
            flops: m.flops.or(b.flops),
            tokens: m.tokens.or(b.tokens),
            dtype: m.dtype.clone().or_else(|| b.dtype.clone()),
            kind: m.kind.clone().or_else(|| b.kind.clone()),
        };
        Ok(row(phase, &merged, open.start_ns, ts.max(open.start_ns), &stamp(&merged)))
    }

    /// Phases begun and not yet ended.
    pub fn open_phases(&self) -> usize {
        self.open.len()
    }
}

fn row(phase: Phase, m: &Marker, start_ns: i64, end_ns: i64, s: &Stamp) -> Step {
    Step {
        cluster: s.cluster.clone(),
        node: s.node.clone(),
        job_id: m.job_id.clone().or_else(|| s.job_id.clone()),
        pid: m.pid,
        rank: m.rank,
        gpu_index: m.gpu_index.or(s.gpu_index),
        phase: phase.name().into(),
        step: m.step,
        start_ns,
        end_ns,
        model_flops: if phase == Phase::Step { m.flops } else { None },
        tokens: m.tokens,
        dtype: m
            .dtype
            .as_deref()
            .map(|d| crate::mfu::normalize_dtype(d).map(str::to_string).unwrap_or_else(|| d.to_string())),
        source: "marker".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(_: &Marker) -> Stamp {
        Stamp { cluster: Arc::from("c"), node: Arc::from("n"), job_id: Some("j".into()), gpu_index: Some(3) }
    }

    #[test]
    fn begin_and_end_make_one_step_row_with_the_flops() {
        let mut t = MarkerTracker::default();
        assert_eq!(
            t.handle(br#"{"v":1,"event":"step_begin","step":12,"pid":42,"rank":5,"ts_ns":1000}"#, 0, stamp),
            Ok(None)
        );
        let row = t
            .handle(br#"{"event":"step_end","step":12,"pid":42,"flops":3.5e15,"tokens":8192,"dtype":"bfloat16","ts_ns":5000,"future_field":true}"#, 0, stamp)
            .unwrap()
            .unwrap();
        assert_eq!((row.start_ns, row.end_ns, row.step, row.rank), (1000, 5000, Some(12), Some(5)));
        assert_eq!((row.model_flops, row.tokens, row.dtype.as_deref()), (Some(3.5e15), Some(8192), Some("bf16")));
        assert_eq!(
            (row.phase.as_str(), row.source.as_str(), row.gpu_index, row.job_id.as_deref()),
            ("step", "marker", Some(3), Some("j"))
        );
        assert_eq!(t.open_phases(), 0);
    }

    #[test]
    fn checkpoints_and_one_shot_steps() {
        let mut t = MarkerTracker::default();
        t.handle(br#"{"event":"checkpoint_begin","kind":"restore","step":100,"pid":1}"#, 10, stamp).unwrap();
        let r = t.handle(br#"{"event":"checkpoint_end","kind":"restore","pid":1}"#, 90, stamp).unwrap().unwrap();
        assert_eq!(
            (r.phase.as_str(), r.step, r.start_ns, r.end_ns, r.model_flops),
            ("checkpoint_restore", Some(100), 10, 90, None)
        );
        let r = t
            .handle(br#"{"event":"step","pid":1,"step":7,"start_ns":5,"end_ns":9,"flops":1e12}"#, 0, stamp)
            .unwrap()
            .unwrap();
        assert_eq!((r.start_ns, r.end_ns, r.model_flops), (5, 9, Some(1e12)));
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        let mut t = MarkerTracker::default();
        let err = |t: &mut MarkerTracker, m: &[u8]| t.handle(m, 0, stamp).unwrap_err().to_string();
        assert!(err(&mut t, b"{not json").starts_with("not a JSON marker object"));
        assert_eq!(
            err(&mut t, br#"{"v":2,"event":"step_begin","pid":1}"#),
            "marker version 2 is newer than version 1 that this agent reads"
        );
        assert!(err(&mut t, br#"{"event":"epoch","pid":1}"#).starts_with("unknown marker event \"epoch\""));
        assert_eq!(err(&mut t, br#"{"event":"step_begin"}"#), "marker \"step_begin\" has no `pid`");
        assert_eq!(err(&mut t, br#"{"event":"step_end","pid":9}"#), "step_end for pid 9 without a matching begin");
        assert!(err(&mut t, br#"{"event":"checkpoint_begin","kind":"upload","pid":9}"#).contains("upload"));
        assert_eq!(
            err(&mut t, br#"{"event":"step","pid":9,"start_ns":5,"end_ns":1}"#),
            "marker `step` needs `start_ns` and `end_ns` with start ≤ end"
        );
        assert!(err(&mut t, br#"{"event":"step_end","pid":9,"flops":-1}"#).starts_with("`flops` must be"));
    }

    #[test]
    fn open_phases_are_bounded() {
        let mut t = MarkerTracker::new(2);
        for pid in 0..5 {
            t.handle(format!(r#"{{"event":"step_begin","pid":{pid}}}"#).as_bytes(), pid as i64, stamp).unwrap();
        }
        assert_eq!((t.open_phases(), t.abandoned), (2, 3));
        // The newest two survive.
        assert!(t.handle(br#"{"event":"step_end","pid":4}"#, 9, stamp).unwrap().is_some());
        assert!(t.handle(br#"{"event":"step_end","pid":0}"#, 9, stamp).is_err());
    }
}
