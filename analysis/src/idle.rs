//! DESIGN §4 idle sub-classes: host_bound, launch_gap, io_blocked,
//! no_process, other.
//!
//! Idle time is made of *gaps*: stretches where no kernel, copy or set runs on
//! the GPU. One rule ([`classify_gap`], HTA's rule) decides what a gap was
//! waiting for, from the kernel that ends it:
//!
//! - **host_bound** (HTA "host wait"): the host launched that kernel only
//!   after the GPU had gone idle (launch time > gap start), and the launching
//!   thread was not blocked in a CUDA synchronize call at the time;
//! - **launch_gap** (HTA "kernel wait"): otherwise, when the gap is shorter
//!   than the launch-gap threshold (back-to-back kernels, launch overhead);
//! - **other**: everything else.
//!
//! Two explanations outrank the rule: time when no process held the GPU is
//! **no_process**, and time inside a checkpoint (the process doing heavy file
//! I/O) is **io_blocked**.
//!
//! The rule is applied at two scopes: the GPU (gaps of the union of all
//! streams, [`classify_idle`], used by `windows` rows; the classes add up to
//! `idle`), and each CUDA stream separately ([`StreamIdle`], the scope of HTA's
//! idle time breakdown, shown in the postmortem and used for validation).

use std::collections::HashMap;

/// What a gap waited for, by the rule above (before the no_process and
/// io_blocked overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapClass {
    HostBound,
    LaunchGap,
    Other,
}

/// The gap rule. `gap_start`: when the GPU (or stream) went idle;
/// `gap_len`: the whole gap's length when known (it may extend past the
/// window); `next_launch`: host time the kernel ending the gap was launched.
pub fn classify_gap(gap_start: i64, gap_len: Option<i64>, next_launch: Option<i64>, launch_gap_ns: i64) -> GapClass {
    match (next_launch, gap_len) {
        (Some(l), _) if l > gap_start => GapClass::HostBound,
        (_, Some(len)) if len < launch_gap_ns => GapClass::LaunchGap,
        _ => GapClass::Other,
    }
}

/// One GPU activity record as the idle sweep needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub start: i64,
    pub end: i64,
    /// Host time of the launching API call, when known.
    pub launch_ns: Option<i64>,
    pub pid: i32,
    pub launch_tid: Option<i32>,
}

/// Idle time of one window split by class; the five classes add up to idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdleClasses {
    pub host_bound_ns: i64,
    pub launch_gap_ns: i64,
    pub io_blocked_ns: i64,
    pub no_process_ns: i64,
    pub other_ns: i64,
    /// Whether any kernel ending a gap carried its launch time; without
    /// launch times host_bound cannot be measured (reported as null).
    pub launch_known: bool,
}

impl IdleClasses {
    pub fn total(&self) -> i64 {
        self.host_bound_ns + self.launch_gap_ns + self.io_blocked_ns + self.no_process_ns + self.other_ns
    }
}

/// Host threads blocked in CUDA synchronize calls, by (pid, tid); each list
/// sorted by start and merged.
pub type BlockedThreads = HashMap<(i32, i32), Vec<(i64, i64)>>;

/// What [`classify_idle`] needs about one GPU window.
#[derive(Debug, Clone, Copy)]
pub struct IdleInput<'a> {
    pub t0: i64,
    pub t1: i64,
    /// Activities sorted by start: every one overlapping `[t0, t1)` and, when
    /// known, the first one starting at or after `t1` (it ends the last gap).
    pub activities: &'a [Activity],
    /// Latest end of the activities that started before `t0` (`None`: none known).
    pub prev_busy_end: Option<i64>,
    pub launch_gap_ns: i64,
    /// Times no process held the GPU, sorted and merged.
    pub no_process: &'a [(i64, i64)],
    /// Checkpoint phases of the GPU's processes, sorted and merged.
    pub io_blocked: &'a [(i64, i64)],
    pub blocked: &'a BlockedThreads,
}

/// Merges intervals in place: sorted, disjoint, non-empty.
pub fn merge_in_place(v: &mut Vec<(i64, i64)>) {
    v.retain(|(s, e)| e > s);
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for &(s, e) in v.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *v = out;
}

/// Splits `[a, b)` against a sorted, merged list: returns the length inside
/// the list and calls `outside` with each piece outside it.
fn split(a: i64, b: i64, list: &[(i64, i64)], mut outside: impl FnMut(i64, i64)) -> i64 {
    let mut inside = 0;
    let mut cur = a;
    let first = list.partition_point(|&(_, e)| e <= a);
    for &(s, e) in &list[first..] {
        if s >= b {
            break;
        }
        if s > cur {
            outside(cur, s);
        }
        let (lo, hi) = (s.max(cur), e.min(b));
        if hi > lo {
            inside += hi - lo;
        }
        cur = cur.max(e);
        if cur >= b {
            break;
        }
    }
    if cur < b {
        outside(cur, b);
    }
    inside
}

/// Classifies the idle time of one GPU window. The result's total equals the
/// window's idle time (T − |∪ activities|).
pub fn classify_idle(input: &IdleInput) -> IdleClasses {
    let IdleInput { t0, t1, activities, prev_busy_end, .. } = *input;
    let mut out = IdleClasses::default();
    if t1 <= t0 {
        return out;
    }
    // `busy_end`: the GPU is busy up to here (None: nothing seen yet).
    let mut busy_end = prev_busy_end;
    let mut tail_known = false;
    let mut i = 0;
    while i < activities.len() {
        let a = activities[i];
        if a.end <= a.start {
            i += 1; // zero-length records keep no GPU busy
            continue;
        }
        let idle_from = busy_end.unwrap_or(t0).max(t0);
        if a.start > idle_from && idle_from < t1 {
            // A gap ends at a.start; the earliest-launched kernel starting then decides.
            let mut next = a;
            for b in activities[i + 1..].iter().take_while(|b| b.start == a.start) {
                if b.end > b.start
                    && b.launch_ns.is_some()
                    && (next.launch_ns.is_none() || b.launch_ns < next.launch_ns)
                {
                    next = *b;
                }
            }
            let gap_start = busy_end.unwrap_or(t0);
            let gap_len = busy_end.map(|e| a.start - e);
            add_gap(input, &mut out, idle_from, a.start.min(t1), gap_start, gap_len, Some(next));
        }
        if a.start >= t1 {
            tail_known = true;
            break;
        }
        busy_end = Some(busy_end.map_or(a.end, |e| e.max(a.end)));
        i += 1;
    }
    // A trailing gap whose end is not known yet: no kernel to judge it by.
    let idle_from = busy_end.unwrap_or(t0).max(t0);
    if !tail_known && idle_from < t1 {
        add_gap(input, &mut out, idle_from, t1, busy_end.unwrap_or(t0), None, None);
    }
    out
}

/// Adds the clipped gap `[a, b)` whose GPU-level gap started at `gap_start`.
#[allow(clippy::too_many_arguments)]
fn add_gap(
    input: &IdleInput,
    out: &mut IdleClasses,
    a: i64,
    b: i64,
    gap_start: i64,
    gap_len: Option<i64>,
    next: Option<Activity>,
) {
    if b <= a {
        return;
    }
    let next_launch = next.and_then(|k| k.launch_ns);
    if next_launch.is_some() {
        out.launch_known = true;
    }
    let class = classify_gap(gap_start, gap_len, next_launch, input.launch_gap_ns);
    let mut rest = Vec::new();
    out.no_process_ns += split(a, b, input.no_process, |x, y| rest.push((x, y)));
    let mut rest2 = Vec::new();
    for (x, y) in rest {
        out.io_blocked_ns += split(x, y, input.io_blocked, |p, q| rest2.push((p, q)));
    }
    for (x, y) in rest2 {
        match class {
            GapClass::HostBound => {
                // Time the launching thread sat in a synchronize call is not
                // the host being slow to launch.
                let blocked = next
                    .and_then(|k| k.launch_tid.map(|tid| (k.pid, tid)))
                    .and_then(|key| input.blocked.get(&key))
                    .map(|v| v.as_slice())
                    .unwrap_or(&[]);
                let mut free = 0;
                let inside = split(x, y, blocked, |p, q| free += q - p);
                out.other_ns += inside;
                out.host_bound_ns += free;
            }
            GapClass::LaunchGap => out.launch_gap_ns += y - x,
            GapClass::Other => out.other_ns += y - x,
        }
    }
}

/// HTA's idle time breakdown: the gap rule applied to each CUDA stream on its
/// own, summed per stream (a second idle on two streams counts twice; these
/// totals do not add up to the GPU's idle time). Feed each stream's records
/// in start order.
#[derive(Debug, Clone, Default)]
pub struct StreamIdle {
    pub launch_gap_ns: i64,
    streams: HashMap<i64, StreamIdleTotals>,
}

/// Per-stream totals of [`StreamIdle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamIdleTotals {
    pub host_wait_ns: i64,
    pub kernel_wait_ns: i64,
    pub other_ns: i64,
    pub kernels: u64,
    #[serde(skip)]
    prev_end: Option<i64>,
}

impl StreamIdleTotals {
    pub fn idle_ns(&self) -> i64 {
        self.host_wait_ns + self.kernel_wait_ns + self.other_ns
    }
}

impl StreamIdle {
    pub fn new(launch_gap_ns: i64) -> Self {
        Self { launch_gap_ns, streams: HashMap::new() }
    }

    /// One record of `stream`; records of a stream must come in start order.
    /// The gap before a stream's first record is not counted (as in HTA).
    pub fn push(&mut self, stream: i64, start: i64, end: i64, launch_ns: Option<i64>) {
        let t = self.streams.entry(stream).or_default();
        t.kernels += 1;
        if let Some(prev_end) = t.prev_end {
            let gap = start - prev_end;
            if gap > 0 {
                match classify_gap(prev_end, Some(gap), launch_ns, self.launch_gap_ns) {
                    GapClass::HostBound => t.host_wait_ns += gap,
                    GapClass::LaunchGap => t.kernel_wait_ns += gap,
                    GapClass::Other => t.other_ns += gap,
                }
            }
        }
        t.prev_end = Some(end);
    }

    /// Totals per stream, ordered by stream id.
    pub fn streams(&self) -> Vec<(i64, StreamIdleTotals)> {
        let mut v: Vec<_> = self.streams.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Sum over streams.
    pub fn total(&self) -> StreamIdleTotals {
        let mut t = StreamIdleTotals::default();
        for s in self.streams.values() {
            t.host_wait_ns += s.host_wait_ns;
            t.kernel_wait_ns += s.kernel_wait_ns;
            t.other_ns += s.other_ns;
            t.kernels += s.kernels;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(start: i64, end: i64, launch: Option<i64>) -> Activity {
        Activity { start, end, launch_ns: launch, pid: 1, launch_tid: Some(7) }
    }

    fn run(
        acts: &[Activity],
        prev: Option<i64>,
        np: &[(i64, i64)],
        io: &[(i64, i64)],
        blocked: &BlockedThreads,
    ) -> IdleClasses {
        classify_idle(&IdleInput {
            t0: 0,
            t1: 1000,
            activities: acts,
            prev_busy_end: prev,
            launch_gap_ns: 30,
            no_process: np,
            io_blocked: io,
            blocked,
        })
    }

    #[test]
    fn gaps_are_classified_by_the_kernel_that_ends_them() {
        let none = BlockedThreads::new();
        let acts = [
            act(0, 100, Some(0)),
            // gap [100,110): 10 < 30, launched early → launch_gap
            act(110, 200, Some(50)),
            // gap [200,400): launched at 300 > 200 → host_bound
            act(400, 500, Some(300)),
            // gap [500,700): launched early, long → other
            act(700, 800, Some(450)),
            // gap [800,820): no launch info, short → launch_gap
            act(820, 900, None),
        ];
        let r = run(&acts, None, &[], &[], &none);
        assert_eq!(r.launch_gap_ns, 10 + 20);
        assert_eq!(r.host_bound_ns, 200);
        assert_eq!(r.other_ns, 200 + 100, "tail [900,1000) has no known end");
        assert_eq!(r.total(), 1000 - 100 - 90 - 100 - 100 - 80);
        assert!(r.launch_known);
    }

    #[test]
    fn overrides_and_blocked_host_threads() {
        let mut blocked = BlockedThreads::new();
        blocked.insert((1, 7), vec![(150, 180)]);
        // gap [100,400) ended by a kernel launched at 350: host_bound, but
        // [150,180) the thread was blocked (other), [300,350) no process, [200,250) in a checkpoint.
        let acts = [act(0, 100, Some(0)), act(400, 1000, Some(350))];
        let r = run(&acts, None, &[(300, 350)], &[(200, 250)], &blocked);
        assert_eq!(r.no_process_ns, 50);
        assert_eq!(r.io_blocked_ns, 50);
        assert_eq!(r.other_ns, 30);
        assert_eq!(r.host_bound_ns, 300 - 50 - 50 - 30);
        assert_eq!(r.total(), 300);
    }

    #[test]
    fn gaps_spanning_the_window_edges_use_the_whole_gap() {
        let none = BlockedThreads::new();
        // Busy until -10 (previous window); next kernel at 1010 launched early: the
        // whole gap is 1020 long → other, though the window sees 1000 of it.
        let acts = [act(1010, 1100, Some(-20))];
        let r = classify_idle(&IdleInput {
            t0: 0,
            t1: 1000,
            activities: &acts,
            prev_busy_end: Some(-10),
            launch_gap_ns: 30,
            no_process: &[],
            io_blocked: &[],
            blocked: &none,
        });
        assert_eq!((r.other_ns, r.total()), (1000, 1000));
        // Same, but the gap is short: [-10, 15) with the kernel at 15 → launch_gap.
        let acts = [act(15, 1000, Some(-20))];
        let r = classify_idle(&IdleInput {
            t0: 0,
            t1: 1000,
            activities: &acts,
            prev_busy_end: Some(-10),
            launch_gap_ns: 30,
            no_process: &[],
            io_blocked: &[],
            blocked: &none,
        });
        assert_eq!((r.launch_gap_ns, r.total()), (15, 15));
    }

    #[test]
    fn per_stream_view_follows_hta() {
        let mut s = StreamIdle::new(30);
        // stream 7: first record not counted; gap 10 early → kernel wait; gap 100 late launch → host wait
        s.push(7, 0, 100, Some(0));
        s.push(7, 110, 200, Some(20));
        s.push(7, 300, 400, Some(250));
        // stream 9 overlaps stream 7 in time: counted on its own
        s.push(9, 50, 60, None);
        s.push(9, 500, 600, None);
        let t = s.streams();
        assert_eq!(t[0].1.kernel_wait_ns, 10);
        assert_eq!(t[0].1.host_wait_ns, 100);
        assert_eq!(t[1].1.other_ns, 440);
        assert_eq!(s.total().idle_ns(), 550);
    }

    #[test]
    fn merge_and_split() {
        let mut v = vec![(5, 10), (0, 3), (2, 4), (8, 12), (20, 20)];
        merge_in_place(&mut v);
        assert_eq!(v, vec![(0, 4), (5, 12)]);
        let mut out = Vec::new();
        assert_eq!(split(-1, 15, &v, |a, b| out.push((a, b))), 11);
        assert_eq!(out, vec![(-1, 0), (4, 5), (12, 15)]);
    }
}
