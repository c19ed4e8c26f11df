//! DESIGN §4: the time decomposition of one GPU window, for many windows at once.
//!
//! The interval algebra is the only place where strand computes `compute`,
//! `comm_exposed`, `memcpy_exposed`, `idle`, `comm_overlapped` and the exposed
//! `sync_stall`; the agent's live windows and the offline tools both come here
//! (through [`crate::window::WindowBuilder`]). Every length is a union or an
//! intersection of intervals computed by [`strand_kernels::Reducer`], so large
//! batches run on the GPU when one is usable:
//!
//! | figure | formula | reducer calls |
//! |---|---|---|
//! | compute | \|∪C\| | `union_length(C)` |
//! | comm_exposed | \|∪M \ ∪C\| = \|∪(C∪M)\| − \|∪C\| | `union_length(C∪M)` |
//! | memcpy_exposed | \|∪X \ (∪C ∪ ∪M)\| = \|∪(C∪M∪X)\| − \|∪(C∪M)\| | `union_length(C∪M∪X)` |
//! | idle | T − \|∪(C∪M∪X)\| | |
//! | comm (all) | \|∪M\| | `union_length(M)` |
//! | comm_overlapped | \|∪M ∩ ∪C\| | `intersection_length(M, C)` |
//! | sync_stall (exposed) | \|∪S \ ∪C\| = \|∪S\| − \|∪S ∩ ∪C\| | `union_length(S)`, `intersection_length(S, C)` |
//! | comm_unidentified | \|∪M \ (∪C ∪ ∪K)\| = \|∪(C∪M∪K)\| − \|∪(C∪K)\| | `union_length(C∪M∪K)`, `union_length(C∪K)` |
//!
//! C, M, X are the compute, communication and copy intervals of the GPU
//! (categories of [`strand_schemas::category::classify`]), S the stall intervals
//! of its collectives ([`crate::sync_stall`]), K the kernels of its collectives
//! (the communication kernels with a collective identity, whether their stall
//! is known or not), all clipped to the window. Exposed communication outside
//! K has no identity: its split into transfer and stall is unknown.

use strand_kernels::{Intervals, KernelsError, Reducer};
use strand_schemas::category::Category;

/// Intervals grouped by segment (one segment per window), in the CSR layout
/// the reducer takes.
#[derive(Debug, Clone, Default)]
pub struct Segmented {
    pub offsets: Vec<usize>,
    pub start: Vec<i64>,
    pub end: Vec<i64>,
}

impl Segmented {
    pub fn new() -> Self {
        Self { offsets: vec![0], start: Vec::new(), end: Vec::new() }
    }

    /// Ends the current segment.
    pub fn close_segment(&mut self) {
        self.offsets.push(self.start.len());
    }

    pub fn push(&mut self, start: i64, end: i64) {
        self.start.push(start);
        self.end.push(end);
    }

    pub fn as_intervals(&self) -> Intervals<'_> {
        Intervals { offsets: &self.offsets, start: &self.start, end: &self.end }
    }

    pub fn rows(&self) -> usize {
        self.start.len()
    }
}

/// The figures of DESIGN §4 for one window. All lengths in nanoseconds.
/// `compute_ns + comm_exposed_ns + memcpy_exposed_ns + idle_ns == window_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decomposition {
    /// T = t1 − t0.
    pub window_ns: i64,
    /// compute = |∪C|.
    pub compute_ns: i64,
    /// comm_exposed = |∪M \ ∪C|.
    pub comm_exposed_ns: i64,
    /// memcpy_exposed = |∪X \ (∪C ∪ ∪M)|.
    pub memcpy_exposed_ns: i64,
    /// idle = T − |∪C ∪ ∪M ∪ ∪X|.
    pub idle_ns: i64,
    /// |∪M|.
    pub comm_ns: i64,
    /// comm_overlapped = |∪M ∩ ∪C|.
    pub comm_overlapped_ns: i64,
    /// The part of comm_exposed spent in sync stalls: |∪S \ ∪C|, at most
    /// comm_exposed − comm_unidentified.
    pub sync_stall_ns: i64,
    /// The part of comm_exposed in communication kernels without a collective
    /// identity: |∪M \ (∪C ∪ ∪K)|.
    pub comm_unidentified_ns: i64,
}

impl Decomposition {
    /// |∪C ∪ ∪M ∪ ∪X|: time at least one kernel, copy or set ran.
    pub fn busy_ns(&self) -> i64 {
        self.window_ns - self.idle_ns
    }

    /// overlap ratio = comm_overlapped / |∪M|; `None` without communication.
    pub fn overlap_ratio(&self) -> Option<f64> {
        (self.comm_ns > 0).then(|| self.comm_overlapped_ns as f64 / self.comm_ns as f64)
    }

    /// comm_exposed − sync_stall − comm_unidentified: exposed communication
    /// of identified collectives that moved data.
    pub fn comm_transfer_ns(&self) -> i64 {
        self.comm_exposed_ns - self.sync_stall_ns - self.comm_unidentified_ns
    }
}

/// Builds the segmented inputs of many windows, then decomposes them all with
/// one set of reducer calls.
///
/// ```
/// use strand_analysis::decompose::DecomposeBatch;
/// use strand_schemas::category::Category;
/// let mut b = DecomposeBatch::default();
/// b.begin_window(0, 100);
/// b.add(Category::Compute, 10, 50);
/// b.add(Category::Communication, 40, 70);
/// let d = &b.run(&strand_kernels::Reducer::cpu()).unwrap()[0];
/// assert_eq!((d.compute_ns, d.comm_exposed_ns, d.idle_ns, d.comm_overlapped_ns), (40, 20, 40, 10));
/// ```
#[derive(Debug, Clone, Default)]
pub struct DecomposeBatch {
    windows: Vec<(i64, i64)>,
    c: Vec<(i64, i64)>,
    m: Vec<(i64, i64)>,
    x: Vec<(i64, i64)>,
    s: Vec<(i64, i64)>,
    k: Vec<(i64, i64)>,
    /// Per window: end offsets into c, m, x, s, k.
    ends: Vec<[usize; 5]>,
}

impl DecomposeBatch {
    /// Starts window `[t0, t1)`; later `add` calls belong to it.
    pub fn begin_window(&mut self, t0: i64, t1: i64) {
        self.seal();
        self.windows.push((t0, t1.max(t0)));
    }

    fn seal(&mut self) {
        if self.ends.len() < self.windows.len() {
            self.ends.push([self.c.len(), self.m.len(), self.x.len(), self.s.len(), self.k.len()]);
        }
    }

    fn current(&self) -> Option<(i64, i64)> {
        self.windows.last().copied()
    }

    /// Adds an activity interval of `category` to the current window, clipped
    /// to it. Empty and inverted intervals add nothing.
    pub fn add(&mut self, category: Category, start: i64, end: i64) {
        let Some((t0, t1)) = self.current() else { return };
        let (s, e) = (start.max(t0), end.min(t1));
        if e <= s {
            return;
        }
        match category {
            Category::Compute => self.c.push((s, e)),
            Category::Communication => self.m.push((s, e)),
            Category::Copy => self.x.push((s, e)),
        }
    }

    /// Adds a sync-stall interval (the waiting head of a communication kernel).
    pub fn add_stall(&mut self, start: i64, end: i64) {
        let Some((t0, t1)) = self.current() else { return };
        let (s, e) = (start.max(t0), end.min(t1));
        if e > s {
            self.s.push((s, e));
        }
    }

    /// Adds the kernel interval of a collective (a communication kernel with
    /// a collective identity, its stall known or not).
    pub fn add_identified(&mut self, start: i64, end: i64) {
        let Some((t0, t1)) = self.current() else { return };
        let (s, e) = (start.max(t0), end.min(t1));
        if e > s {
            self.k.push((s, e));
        }
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Decomposes every window, in the order they were begun.
    pub fn run(mut self, reducer: &Reducer) -> Result<Vec<Decomposition>, KernelsError> {
        self.seal();
        let n = self.windows.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Segment i of each set holds window i's intervals.
        let mut c = Segmented::new();
        let mut m = Segmented::new();
        let mut cm = Segmented::new();
        let mut cmx = Segmented::new();
        let mut s = Segmented::new();
        let mut cmk = Segmented::new();
        let mut ck = Segmented::new();
        let mut prev = [0usize; 5];
        for end in &self.ends {
            let cs = &self.c[prev[0]..end[0]];
            let ms = &self.m[prev[1]..end[1]];
            let xs = &self.x[prev[2]..end[2]];
            let ss = &self.s[prev[3]..end[3]];
            let ks = &self.k[prev[4]..end[4]];
            // Only windows with both communication and collective kernels need the two extra unions.
            if !ms.is_empty() && !ks.is_empty() {
                for &(a, b) in cs.iter().chain(ks) {
                    cmk.push(a, b);
                    ck.push(a, b);
                }
                for &(a, b) in ms {
                    cmk.push(a, b);
                }
            }
            for &(a, b) in cs {
                c.push(a, b);
                cm.push(a, b);
                cmx.push(a, b);
            }
            for &(a, b) in ms {
                m.push(a, b);
                cm.push(a, b);
                cmx.push(a, b);
            }
            for &(a, b) in xs {
                cmx.push(a, b);
            }
            for &(a, b) in ss {
                s.push(a, b);
            }
            for set in [&mut c, &mut m, &mut cm, &mut cmx, &mut s, &mut cmk, &mut ck] {
                set.close_segment();
            }
            prev = *end;
        }
        let u_c = reducer.union_length(c.as_intervals())?;
        let u_m = reducer.union_length(m.as_intervals())?;
        let u_cm = reducer.union_length(cm.as_intervals())?;
        let u_cmx = reducer.union_length(cmx.as_intervals())?;
        let i_mc = reducer.intersection_length(m.as_intervals(), c.as_intervals())?;
        let (u_s, i_sc) = if s.rows() == 0 {
            (vec![0; n], vec![0; n])
        } else {
            (reducer.union_length(s.as_intervals())?, reducer.intersection_length(s.as_intervals(), c.as_intervals())?)
        };
        let (u_cmk, u_ck) = if ck.rows() == 0 {
            (vec![0; n], vec![0; n])
        } else {
            (reducer.union_length(cmk.as_intervals())?, reducer.union_length(ck.as_intervals())?)
        };
        let with_k: Vec<bool> = {
            let mut prev = 0usize;
            self.ends
                .iter()
                .map(|e| {
                    let has = e[4] > prev;
                    prev = e[4];
                    has
                })
                .collect()
        };
        Ok((0..n)
            .map(|i| {
                let (t0, t1) = self.windows[i];
                let comm_exposed_ns = u_cm[i] - u_c[i];
                // Without collective kernels, all exposed communication is unidentified.
                let comm_unidentified_ns =
                    if with_k[i] { (u_cmk[i] - u_ck[i]).clamp(0, comm_exposed_ns) } else { comm_exposed_ns };
                Decomposition {
                    window_ns: t1 - t0,
                    compute_ns: u_c[i],
                    comm_exposed_ns,
                    memcpy_exposed_ns: u_cmx[i] - u_cm[i],
                    idle_ns: (t1 - t0) - u_cmx[i],
                    comm_ns: u_m[i],
                    comm_overlapped_ns: i_mc[i],
                    // Stall intervals come from collective records that may
                    // not line up exactly with the kernel records: never more
                    // than the exposed communication they are part of.
                    sync_stall_ns: (u_s[i] - i_sc[i]).clamp(0, comm_exposed_ns - comm_unidentified_ns),
                    comm_unidentified_ns,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    fn one(f: impl FnOnce(&mut DecomposeBatch)) -> Decomposition {
        let mut b = DecomposeBatch::default();
        f(&mut b);
        b.run(&Reducer::cpu()).unwrap()[0]
    }

    #[test]
    fn overlapping_streams_nested_and_zero_length_intervals() {
        // Window [0, 1000).
        // compute: stream A [100,300), stream B [200,400) overlapping, nested [250,260), zero-length [500,500)
        // comm: [350,600) — overlapped by compute on [350,400), exposed [400,600)
        // copy: [550,700) — exposed part [600,700); copy [120,130) hidden under compute
        let d = one(|b| {
            b.begin_window(0, 1000);
            b.add(Compute, 100, 300);
            b.add(Compute, 200, 400);
            b.add(Compute, 250, 260);
            b.add(Compute, 500, 500);
            b.add(Communication, 350, 600);
            b.add(Copy, 550, 700);
            b.add(Copy, 120, 130);
        });
        assert_eq!(d.compute_ns, 300);
        assert_eq!(d.comm_ns, 250);
        assert_eq!(d.comm_overlapped_ns, 50);
        assert_eq!(d.comm_exposed_ns, 200);
        assert_eq!(d.memcpy_exposed_ns, 100);
        assert_eq!(d.idle_ns, 400);
        assert_eq!(d.overlap_ratio(), Some(0.2));
        assert_eq!(d.compute_ns + d.comm_exposed_ns + d.memcpy_exposed_ns + d.idle_ns, d.window_ns);
    }

    #[test]
    fn intervals_are_clipped_to_their_window_and_windows_are_independent() {
        let mut b = DecomposeBatch::default();
        b.begin_window(0, 100);
        b.add(Compute, -50, 30); // clipped to [0,30)
        b.add(Communication, 90, 150); // clipped to [90,100)
        b.begin_window(100, 200);
        b.add(Communication, 90, 150); // clipped to [100,150)
        b.add_stall(90, 120); // clipped to [100,120)
        b.add_identified(90, 150);
        b.begin_window(200, 300); // empty: all idle
        let r = b.run(&Reducer::cpu()).unwrap();
        assert_eq!((r[0].compute_ns, r[0].comm_exposed_ns, r[0].idle_ns), (30, 10, 60));
        assert_eq!(
            r[0].comm_unidentified_ns, 10,
            "no collective kernel in window 0: its communication has no identity"
        );
        assert_eq!((r[1].compute_ns, r[1].comm_exposed_ns, r[1].sync_stall_ns, r[1].idle_ns), (0, 50, 20, 50));
        assert_eq!((r[1].comm_transfer_ns(), r[1].comm_unidentified_ns), (30, 0));
        assert_eq!((r[2].idle_ns, r[2].comm_ns, r[2].overlap_ratio()), (100, 0, None));
    }

    #[test]
    fn a_stall_hidden_under_compute_is_not_exposed() {
        let d = one(|b| {
            b.begin_window(0, 100);
            b.add(Communication, 0, 60);
            b.add_stall(0, 40);
            b.add_identified(0, 60);
            b.add(Compute, 0, 30);
        });
        // Stall [0,40) minus compute [0,30) = 10 exposed; comm exposed [30,60) = 30.
        assert_eq!((d.sync_stall_ns, d.comm_exposed_ns, d.comm_transfer_ns()), (10, 30, 20));
    }

    #[test]
    fn communication_without_a_collective_identity_is_split_unknown_beside_an_identified_one() {
        // An NCCL collective [0,100) with a 40 ns stall; a DeepEP kernel [80,200) without identity;
        // compute hides [150,170).
        let d = one(|b| {
            b.begin_window(0, 300);
            b.add(Communication, 0, 100);
            b.add_identified(0, 100);
            b.add_stall(0, 40);
            b.add(Communication, 80, 200);
            b.add(Compute, 150, 170);
        });
        // Exposed: [0,150) ∪ [170,200) = 180; unidentified: [100,150) ∪ [170,200) = 80.
        assert_eq!(
            (d.comm_exposed_ns, d.comm_unidentified_ns, d.sync_stall_ns, d.comm_transfer_ns()),
            (180, 80, 40, 60)
        );
    }
}
