//! Joins NCCL calls seen by eBPF (host side) with the NCCL kernels CUPTI saw
//! them launch (device side), filling `kernel_start_ns`, `kernel_end_ns` and
//! the GPU of each `nccl_calls` row: the sync stall of DESIGN §4 needs the
//! device-side start of each rank's collective.
//!
//! A call launches its kernel from its own thread while it runs; inside an
//! `ncclGroupStart`/`ncclGroupEnd` pair the launch happens in the
//! `ncclGroupEnd`, and every call of the group gets the span of the kernels
//! that group end launched (NCCL fuses the group's work; its kernels cannot be
//! told apart per call). So a kernel belongs to a call when
//! `launch_tid == tid` and `launch_ns` falls inside the call (or its group
//! end). CUPTI delivers records seconds after the fact, so calls of processes
//! that send CUPTI records wait up to `hold` for their kernels; calls of
//! other processes pass straight through.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use strand_schemas::category::Category;
use strand_schemas::{GpuSample, KernelEvent, NcclCall};

#[derive(Debug, Clone)]
struct Launch {
    launch_ns: i64,
    start_ns: i64,
    end_ns: i64,
    gpu_index: Option<i32>,
    gpu_uuid: Option<Arc<str>>,
}

/// Counters of the join, exported by the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinStats {
    pub joined: u64,
    pub unjoined: u64,
    pub passed_through: u64,
}

pub struct NcclJoiner {
    hold_ns: i64,
    max_held: usize,
    /// Calls waiting for their kernels, with the time they arrived.
    held: VecDeque<(NcclCall, i64)>,
    /// NCCL kernels by launching (pid, tid), ordered by launch time.
    kernels: HashMap<(i32, i32), Vec<Launch>>,
    /// Processes that sent CUPTI records, and when last.
    cupti_pids: HashMap<i32, i64>,
    /// Processes holding exactly one GPU (NVML), for calls without a kernel.
    pid_gpu: HashMap<i32, (i32, Arc<str>)>,
    /// `(pid, tid, group_id)` → the group end's (enter, exit).
    group_ends: HashMap<(i32, i32, i64), (i64, Option<i64>)>,
    pub stats: JoinStats,
}

/// How long kernel launches are remembered after the newest one seen.
const KERNEL_MEMORY_NS: i64 = 120_000_000_000;

impl NcclJoiner {
    pub fn new(hold_ns: i64, max_held: usize) -> Self {
        Self {
            hold_ns,
            max_held,
            held: VecDeque::new(),
            kernels: HashMap::new(),
            cupti_pids: HashMap::new(),
            pid_gpu: HashMap::new(),
            group_ends: HashMap::new(),
            stats: JoinStats::default(),
        }
    }

    /// Remembers NCCL kernels with a known launching thread.
    pub fn push_kernels(&mut self, rows: &[KernelEvent], now_ns: i64) {
        for k in rows {
            self.cupti_pids.insert(k.pid, now_ns);
            // Only NCCL's own kernels: a DeepEP or custom all-reduce kernel the
            // same thread launched is communication, but no NCCL call's.
            if Category::parse(&k.category) != Some(Category::Communication)
                || !strand_schemas::comm_kernels::launched_by_nccl_api(&k.name)
            {
                continue;
            }
            let (Some(tid), Some(launch_ns)) = (k.launch_tid, k.launch_ns) else { continue };
            let v = self.kernels.entry((k.pid, tid)).or_default();
            let l = Launch {
                launch_ns,
                start_ns: k.start_ns,
                end_ns: k.end_ns,
                gpu_index: k.gpu_index,
                gpu_uuid: k.gpu_uuid.clone(),
            };
            let at = v.partition_point(|x| x.launch_ns <= launch_ns);
            v.insert(at, l);
        }
        // Forget launches far older than the newest.
        if let Some(newest) = self.kernels.values().filter_map(|v| v.last()).map(|l| l.launch_ns).max() {
            for v in self.kernels.values_mut() {
                let keep = v.partition_point(|l| l.launch_ns < newest - KERNEL_MEMORY_NS);
                v.drain(..keep);
            }
            self.kernels.retain(|_, v| !v.is_empty());
        }
        self.cupti_pids.retain(|_, seen| now_ns - *seen < KERNEL_MEMORY_NS);
    }

    /// Learns which processes hold exactly one GPU.
    pub fn push_samples(&mut self, rows: &[GpuSample]) {
        let mut gpus_of: HashMap<i32, Vec<(i32, Arc<str>)>> = HashMap::new();
        for s in rows {
            for &p in &s.pids {
                gpus_of.entry(p).or_default().push((s.gpu_index, s.gpu_uuid.clone()));
            }
        }
        for (pid, gpus) in gpus_of {
            if let [one] = gpus.as_slice() {
                self.pid_gpu.insert(pid, one.clone());
            } else {
                self.pid_gpu.remove(&pid);
            }
        }
        if self.pid_gpu.len() > 65_536 {
            self.pid_gpu.clear();
        }
    }

    /// Accepts calls; they come out of [`drain`](Self::drain).
    pub fn push_calls(&mut self, rows: Vec<NcclCall>, now_ns: i64) {
        for c in rows {
            if c.op == "group_end"
                && let Some(g) = c.group_id
            {
                self.group_ends.insert((c.pid, c.tid, g), (c.enter_ns, c.exit_ns));
            }
            self.held.push_back((c, now_ns));
        }
    }

    /// The launch window of a call: its own span, or its group end's.
    fn window(&self, c: &NcclCall) -> Option<(i64, i64)> {
        let own = (c.enter_ns, c.exit_ns?);
        match c.group_id {
            Some(g) if c.op != "group_end" => {
                let (enter, exit) = *self.group_ends.get(&(c.pid, c.tid, g))?;
                Some((enter, exit?))
            }
            _ => Some(own),
        }
    }

    fn try_join(&self, c: &mut NcclCall) -> bool {
        let Some((from, to)) = self.window(c) else { return false };
        let Some(v) = self.kernels.get(&(c.pid, c.tid)) else { return false };
        let lo = v.partition_point(|l| l.launch_ns < from);
        let hits = v[lo..].iter().take_while(|l| l.launch_ns <= to);
        let mut span: Option<(i64, i64, &Launch)> = None;
        for l in hits {
            span = Some(match span {
                None => (l.start_ns, l.end_ns, l),
                Some((s, e, first)) => (s.min(l.start_ns), e.max(l.end_ns), first),
            });
        }
        let Some((start, end, first)) = span else { return false };
        c.kernel_start_ns = Some(start);
        c.kernel_end_ns = Some(end);
        if c.gpu_index.is_none() {
            c.gpu_index = first.gpu_index;
        }
        if c.gpu_uuid.is_none() {
            c.gpu_uuid = first.gpu_uuid.clone();
        }
        true
    }

    fn finish(&mut self, mut c: NcclCall) -> NcclCall {
        if c.gpu_index.is_none()
            && let Some((i, u)) = self.pid_gpu.get(&c.pid)
        {
            c.gpu_index = Some(*i);
            c.gpu_uuid = Some(u.clone());
        }
        c
    }

    /// Calls that found their kernels, waited `hold`, or never will (their
    /// process sends no CUPTI records, or they launch nothing); in arrival order.
    pub fn drain(&mut self, now_ns: i64) -> Vec<NcclCall> {
        let mut out = Vec::new();
        let mut waiting = VecDeque::with_capacity(self.held.len());
        let over = self.held.len().saturating_sub(self.max_held);
        for (i, (mut c, arrived)) in std::mem::take(&mut self.held).into_iter().enumerate() {
            let launches = matches!(
                c.op.as_str(),
                "allreduce" | "broadcast" | "reduce" | "allgather" | "reducescatter" | "alltoall" | "send" | "recv"
            );
            if !launches || !self.cupti_pids.contains_key(&c.pid) {
                self.stats.passed_through += 1;
                out.push(self.finish(c));
            } else if self.try_join(&mut c) {
                self.stats.joined += 1;
                out.push(self.finish(c));
            } else if i < over || now_ns - arrived >= self.hold_ns {
                self.stats.unjoined += 1;
                out.push(self.finish(c));
            } else {
                waiting.push_back((c, arrived));
            }
        }
        self.held = waiting;
        // Group ends no held call refers to any more.
        let live: std::collections::HashSet<(i32, i32, i64)> =
            self.held.iter().filter_map(|(c, _)| c.group_id.map(|g| (c.pid, c.tid, g))).collect();
        self.group_ends.retain(|k, _| live.contains(k));
        out
    }

    /// Everything still held (shutdown).
    pub fn flush(&mut self) -> Vec<NcclCall> {
        self.drain(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_schemas::Table;

    fn call(op: &str, tid: i32, enter: i64, exit: i64, group: Option<i64>) -> NcclCall {
        let mut c = NcclCall::example(1);
        c.pid = 100;
        c.tid = tid;
        c.op = op.into();
        c.enter_ns = enter;
        c.exit_ns = Some(exit);
        c.group_id = group;
        c.gpu_index = None;
        c.gpu_uuid = None;
        c.kernel_start_ns = None;
        c.kernel_end_ns = None;
        c
    }

    fn kernel(tid: i32, launch: i64, start: i64, end: i64, name: &str) -> KernelEvent {
        let mut k = KernelEvent::example(1);
        k.pid = 100;
        k.launch_tid = Some(tid);
        k.launch_ns = Some(launch);
        k.start_ns = start;
        k.end_ns = end;
        k.name = Arc::from(name);
        k.category = strand_schemas::category::classify("kernel", name).as_str().into();
        k.gpu_index = Some(3);
        k.gpu_uuid = Some(Arc::from("GPU-3"));
        k
    }

    #[test]
    fn a_call_gets_the_kernel_it_launched_and_its_gpu() {
        let mut j = NcclJoiner::new(5_000, 1000);
        j.push_kernels(&[kernel(7, 10, 20, 30, "sm90_gemm")], 0); // the process sends CUPTI records
        j.push_calls(vec![call("allreduce", 7, 1_000, 1_200, None)], 0);
        assert!(j.drain(10).is_empty(), "held until its kernel arrives");
        j.push_kernels(
            &[
                kernel(7, 900, 950, 990, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL"), // before the call
                // Communication, but DeepEP's: launched inside the call's span, yet no NCCL call's kernel.
                kernel(7, 1_050, 1_060, 1_400, "_ZN7deep_ep9intranode7barrierILi8EEEvPPii"),
                kernel(7, 1_100, 1_500, 2_500, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL"),
                kernel(8, 1_100, 1_600, 2_600, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL"), // other thread
                kernel(7, 1_150, 1_700, 1_800, "sm90_gemm"),                                // not NCCL
            ],
            20,
        );
        let out = j.drain(30);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].kernel_start_ns, out[0].kernel_end_ns), (Some(1_500), Some(2_500)));
        assert_eq!(out[0].gpu_index, Some(3));
        assert_eq!(j.stats, JoinStats { joined: 1, unjoined: 0, passed_through: 0 });
    }

    #[test]
    fn grouped_calls_get_the_kernels_of_their_group_end() {
        let mut j = NcclJoiner::new(5_000, 1000);
        j.push_kernels(
            &[
                kernel(7, 5_050, 6_000, 9_000, "ncclDevKernel_Generic"),
                kernel(7, 5_060, 6_100, 9_500, "ncclDevKernel_Generic"),
            ],
            0,
        );
        j.push_calls(
            vec![
                call("group_start", 7, 1_000, 1_010, Some(4)),
                call("allreduce", 7, 2_000, 2_010, Some(4)),
                call("allgather", 7, 3_000, 3_010, Some(4)),
                call("group_end", 7, 5_000, 5_100, Some(4)),
            ],
            0,
        );
        let out = j.drain(1);
        let by_op = |op: &str| out.iter().find(|c| c.op == op).unwrap().clone();
        for op in ["allreduce", "allgather"] {
            assert_eq!((by_op(op).kernel_start_ns, by_op(op).kernel_end_ns), (Some(6_000), Some(9_500)), "{op}");
        }
        assert_eq!(by_op("group_start").kernel_start_ns, None);
        assert_eq!(out.len(), 4, "every call comes out once");
    }

    #[test]
    fn calls_without_cupti_pass_through_and_unmatched_ones_leave_after_hold() {
        let mut j = NcclJoiner::new(5_000, 1000);
        let mut s = GpuSample::example(1);
        s.pids = vec![100];
        s.gpu_index = 2;
        s.gpu_uuid = Arc::from("GPU-2");
        j.push_samples(&[s]);
        j.push_calls(vec![call("allreduce", 7, 1_000, 1_200, None)], 0);
        let out = j.drain(0);
        assert_eq!(out.len(), 1, "no CUPTI records from this process: no waiting");
        assert_eq!(out[0].gpu_index, Some(2), "GPU from NVML's process list");
        assert_eq!(out[0].kernel_start_ns, None);

        j.push_kernels(&[kernel(9, 1, 2, 3, "x")], 0); // the process now sends CUPTI records
        j.push_calls(vec![call("allreduce", 7, 10_000, 10_200, None)], 100);
        assert!(j.drain(4_000).is_empty());
        let out = j.drain(5_100);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kernel_start_ns, None);
        assert_eq!(j.stats.unjoined, 1);
    }

    #[test]
    fn held_calls_are_bounded() {
        let mut j = NcclJoiner::new(i64::MAX, 2);
        j.push_kernels(&[kernel(9, 1, 2, 3, "x")], 0);
        j.push_calls((0..5).map(|i| call("allreduce", 7, i * 10, i * 10 + 5, None)).collect(), 0);
        let out = j.drain(1);
        assert_eq!(out.len(), 3, "the oldest beyond the bound leave unjoined");
        assert_eq!(j.flush().len(), 2);
    }
}
