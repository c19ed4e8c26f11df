//! Host-side planning of the GPU work, kept free of CUDA so that the CI
//! machine (no GPU) tests it against the CPU backend through an emulated
//! device (see the tests at the bottom).
//!
//! Interval union. A *problem* is a run of rows with an incoming running
//! maximum end `m_in`; its answer is `Σ max(0, end_i − max(start_i, M_{i−1}))`
//! over its rows sorted by start, `M_{−1} = m_in`. A segment is one problem
//! with `m_in = i64::MIN`. Problems of at most [`SMALL`] rows are sorted and
//! solved on chip in one go. A larger problem is split by start *value* into
//! buckets of about [`TARGET_BUCKET`] rows (one counting pass and one scatter):
//! every start in bucket `k` is below every start in bucket `k+1`, so bucket
//! `k` is a problem again with `m_in` = the largest end of the buckets before
//! it. The start range shrinks at every level, so this ends; a problem whose
//! starts are all equal needs no sort at all ([`CONSTANT`]).
//!
//! Intersection: `|∪A ∩ ∪B| = |∪A| + |∪B| − |∪(A ∪ B)|`, so it is three unions
//! with signs, solved in one batch.

use std::ops::Range;

use crate::KernelsError;

/// Largest problem sorted in shared memory (`SMALL` in kernels.cu).
pub const SMALL: u32 = 2048;
/// Largest problem solved by one warp (`union_solve_warp`).
pub const WARP_ROWS: u32 = 32;
/// Rows per block of the range / bucket / scatter kernels.
pub const TILE_ROWS: u64 = 4096;
/// Rows a bucket should hold on average after a split.
pub const TARGET_BUCKET: u64 = 512;
/// Problem flag: every start is the same value.
pub const CONSTANT: u32 = 1;

/// One union problem; `#[repr(C)]` twin of `struct Problem` in kernels.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Problem {
    pub off: u64,
    pub m_in: i64,
    pub len: u32,
    pub slot: u32,
    pub sign: i32,
    pub flags: u32,
}

/// Rows `[lo, hi)` of large problem `problem`; twin of `struct Tile`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tile {
    pub lo: u64,
    pub hi: u64,
    pub problem: u32,
    pub pad: u32,
}

/// Bucketing of one large problem: bucket of start `s` is
/// `base + (s − lo) / width` (unsigned); twin of `struct Split`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    pub lo: i64,
    pub width: u64,
    pub base: u32,
    pub pad: u32,
}

/// The four device steps the union planner needs. Buffers `0` and `1` hold
/// `(start, end)` rows; the scatter moves rows from `buf` to `buf ^ 1`.
pub trait UnionDevice {
    /// Adds each problem's answer times its sign to its output slot.
    fn solve(&mut self, buf: usize, problems: &[Problem]) -> Result<(), KernelsError>;
    /// Smallest and largest start of each of `n` problems covered by `tiles`.
    fn ranges(&mut self, buf: usize, tiles: &[Tile], n: usize) -> Result<Vec<(i64, i64)>, KernelsError>;
    /// Rows and largest end of each of `buckets` buckets.
    fn bucket_stats(
        &mut self,
        buf: usize,
        tiles: &[Tile],
        splits: &[Split],
        buckets: usize,
    ) -> Result<(Vec<u32>, Vec<i64>), KernelsError>;
    /// Moves each row of `buf` to `cursor[bucket]++` of `buf ^ 1`.
    fn scatter(&mut self, buf: usize, tiles: &[Tile], splits: &[Split], cursors: &[u64]) -> Result<(), KernelsError>;
}

fn tiles_of(problems: &[Problem]) -> Vec<Tile> {
    let mut tiles = Vec::new();
    for (i, p) in problems.iter().enumerate() {
        let end = p.off + p.len as u64;
        let mut lo = p.off;
        while lo < end {
            let hi = (lo + TILE_ROWS).min(end);
            tiles.push(Tile { lo, hi, problem: i as u32, pad: 0 });
            lo = hi;
        }
    }
    tiles
}

/// Solves `problems` (rows in buffer 0) to completion; answers accumulate in
/// the device's output slots. `small` is [`SMALL`] on a GPU; tests pass tiny
/// values to force many split levels.
pub fn run_union<D: UnionDevice>(dev: &mut D, mut problems: Vec<Problem>, small: u32) -> Result<(), KernelsError> {
    let mut buf = 0usize;
    while !problems.is_empty() {
        let (mut solve, large): (Vec<Problem>, Vec<Problem>) =
            problems.into_iter().partition(|p| p.len <= small || p.flags & CONSTANT != 0);
        if !large.is_empty() {
            let ranges = dev.ranges(buf, &tiles_of(&large), large.len())?;
            let mut split = Vec::new();
            for (p, (lo, hi)) in large.into_iter().zip(ranges) {
                if lo == hi {
                    solve.push(Problem { flags: CONSTANT, ..p });
                } else if lo < hi {
                    split.push((p, lo, hi));
                } else {
                    return Err(KernelsError::Gpu(format!("start range of a problem came back empty ({lo} > {hi})")));
                }
            }
            problems = split_level(dev, buf, &split)?;
        } else {
            problems = Vec::new();
        }
        if !solve.is_empty() {
            dev.solve(buf, &solve)?;
        }
        buf ^= 1;
    }
    Ok(())
}

/// One split level: buckets every problem of `split` by start value, moves the
/// rows into bucket order in the other buffer and returns the buckets as problems.
fn split_level<D: UnionDevice>(
    dev: &mut D,
    buf: usize,
    split: &[(Problem, i64, i64)],
) -> Result<Vec<Problem>, KernelsError> {
    if split.is_empty() {
        return Ok(Vec::new());
    }
    let mut splits = Vec::with_capacity(split.len());
    let mut counts_per = Vec::with_capacity(split.len());
    let mut base = 0u64;
    for &(p, lo, hi) in split {
        let range = (hi as i128 - lo as i128) as u128; // >= 1
        let want = (p.len as u128).div_ceil(TARGET_BUCKET as u128).max(2);
        let width = (range + 1).div_ceil(want); // 1..=2^63
        let n = (range / width + 1) as u64;
        splits.push(Split { lo, width: width as u64, base: base as u32, pad: 0 });
        counts_per.push(n);
        base += n;
    }
    if base > u32::MAX as u64 {
        return Err(KernelsError::Gpu(format!("{base} buckets do not fit a u32 index")));
    }
    let problems: Vec<Problem> = split.iter().map(|s| s.0).collect();
    let tiles = tiles_of(&problems);
    let (counts, maxend) = dev.bucket_stats(buf, &tiles, &splits, base as usize)?;
    let mut cursors = vec![0u64; base as usize];
    let mut next = Vec::new();
    for ((p, sp), n) in problems.iter().zip(&splits).zip(counts_per) {
        let (mut pos, mut m) = (p.off, p.m_in);
        for b in sp.base as usize..(sp.base as u64 + n) as usize {
            cursors[b] = pos;
            let c = counts[b];
            if c > 0 {
                next.push(Problem { off: pos, len: c, m_in: m, slot: p.slot, sign: p.sign, flags: 0 });
            }
            pos += c as u64;
            m = m.max(maxend[b]);
        }
        if pos != p.off + p.len as u64 {
            return Err(KernelsError::Gpu(format!("bucket counts add up to {} rows, expected {}", pos - p.off, p.len)));
        }
    }
    dev.scatter(buf, &tiles, &splits, &cursors)?;
    Ok(next)
}

/// One problem per non-empty segment of `offsets` (chunk-relative), rows
/// starting at `row_base`, answers to slot `slot_base + s`.
pub fn segment_problems(offsets: &[u64], row_base: u64, slot_base: u32, sign: i32, out: &mut Vec<Problem>) {
    for (s, w) in offsets.windows(2).enumerate() {
        if w[1] > w[0] {
            out.push(Problem {
                off: row_base + w[0],
                m_in: i64::MIN,
                len: (w[1] - w[0]) as u32,
                slot: slot_base + s as u32,
                sign,
                flags: 0,
            });
        }
    }
}

/// Problems of an intersection chunk: A's rows at `[0, na)`, B's at
/// `[na, na + nb)`, and per segment A's rows then B's (built on the device by
/// `interleave_kernel`) at `na + nb + a_off[s] + b_off[s]`.
pub fn intersection_problems(a_off: &[u64], b_off: &[u64]) -> Vec<Problem> {
    let na = *a_off.last().unwrap_or(&0);
    let nb = *b_off.last().unwrap_or(&0);
    let ab: Vec<u64> = a_off.iter().zip(b_off).map(|(a, b)| a + b).collect();
    let mut out = Vec::new();
    segment_problems(a_off, 0, 0, 1, &mut out);
    segment_problems(b_off, na, 0, 1, &mut out);
    segment_problems(&ab, na + nb, 0, -1, &mut out);
    out
}

/// Groups consecutive segments into chunks of at most `max_rows` rows and
/// `max_segs` segments. A segment alone over `max_rows` is returned in the
/// second list: the caller runs it on the CPU (documented in docs/kernels.md).
pub fn whole_segment_chunks(
    nseg: usize,
    rows_of: impl Fn(usize) -> usize,
    max_rows: usize,
    max_segs: usize,
) -> (Vec<Range<usize>>, Vec<usize>) {
    let (mut chunks, mut oversized) = (Vec::new(), Vec::new());
    let (mut lo, mut rows) = (0usize, 0usize);
    for s in 0..nseg {
        let r = rows_of(s);
        if r > max_rows {
            if lo < s {
                chunks.push(lo..s);
            }
            oversized.push(s);
            (lo, rows) = (s + 1, 0);
            continue;
        }
        if rows + r > max_rows || s - lo >= max_segs {
            chunks.push(lo..s);
            (lo, rows) = (s, 0);
        }
        rows += r;
    }
    if lo < nseg {
        chunks.push(lo..nseg);
    }
    (chunks, oversized)
}

/// A piece of a decomposable reduction: rows `rows` fall in segments `segs`
/// (a segment may be split across pieces; the caller combines the partials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChunk {
    pub rows: Range<usize>,
    pub segs: Range<usize>,
}

impl RowChunk {
    /// Chunk-relative offsets of `segs`, clamped to `rows`.
    pub fn offsets(&self, offsets: &[usize]) -> Vec<u64> {
        offsets[self.segs.start..=self.segs.end]
            .iter()
            .map(|&o| (o.clamp(self.rows.start, self.rows.end) - self.rows.start) as u64)
            .collect()
    }
}

/// Cuts `offsets` into row pieces of at most `max_rows` rows touching at most
/// `max_segs` segments (both at least 1). Segments with no rows after the last
/// row may be left out: they need no device work.
pub fn row_chunks(offsets: &[usize], max_rows: usize, max_segs: usize) -> Vec<RowChunk> {
    let (max_rows, max_segs) = (max_rows.max(1), max_segs.max(1));
    let nseg = offsets.len() - 1;
    let rows = offsets[nseg];
    let mut out = Vec::new();
    let (mut r, mut s) = (0usize, 0usize);
    while r < rows {
        while offsets[s + 1] <= r {
            s += 1;
        }
        let cap = rows.min(r + max_rows);
        let mut hi = s + 1;
        while hi < nseg && hi - s < max_segs && offsets[hi] < cap {
            hi += 1;
        }
        let r1 = cap.min(offsets[hi]);
        out.push(RowChunk { rows: r..r1, segs: s..hi });
        r = r1;
    }
    out
}

/// Contiguous row pieces of at most `max_rows` rows (for group operations,
/// whose rows are not grouped by segment).
pub fn plain_chunks(rows: usize, max_rows: usize) -> Vec<Range<usize>> {
    let max_rows = max_rows.max(1);
    (0..rows.div_ceil(max_rows)).map(|i| i * max_rows..rows.min((i + 1) * max_rows)).collect()
}

#[cfg(test)]
pub(crate) mod emulated {
    //! A CPU model of the union kernels with the kernels' exact semantics, to
    //! test the planner without a GPU.
    use super::*;

    pub struct Emulated {
        pub start: [Vec<i64>; 2],
        pub end: [Vec<i64>; 2],
        pub out: Vec<u64>,
        pub levels: usize,
    }

    impl Emulated {
        pub fn new(start: Vec<i64>, end: Vec<i64>, slots: usize) -> Self {
            let n = start.len();
            Self { start: [start, vec![7; n]], end: [end, vec![-7; n]], out: vec![0; slots], levels: 0 }
        }

        /// `interleave_kernel`: A rows `[0, na)`, B rows `[na, na + nb)`.
        pub fn interleave(&mut self, na: u64, nb: u64, a_off: &[u64], b_off: &[u64]) {
            let base = na + nb;
            let seg = |off: &[u64], i: u64| off.partition_point(|&o| o <= i) - 1;
            for r in 0..na + nb {
                let dst = if r < na {
                    base + b_off[seg(a_off, r)] + r
                } else {
                    base + a_off[seg(b_off, r - na) + 1] + (r - na)
                };
                self.start[0][dst as usize] = self.start[0][r as usize];
                self.end[0][dst as usize] = self.end[0][r as usize];
            }
        }

        fn bucket(sp: &Split, s: i64) -> usize {
            sp.base as usize + ((s as u64).wrapping_sub(sp.lo as u64) / sp.width) as usize
        }
    }

    impl UnionDevice for Emulated {
        fn solve(&mut self, buf: usize, problems: &[Problem]) -> Result<(), KernelsError> {
            for p in problems {
                let r = p.off as usize..(p.off + p.len as u64) as usize;
                let mut rows: Vec<(i64, i64)> =
                    self.start[buf][r.clone()].iter().copied().zip(self.end[buf][r].iter().copied()).collect();
                if p.flags & CONSTANT != 0 {
                    assert!(rows.iter().all(|x| x.0 == rows[0].0), "CONSTANT problem with different starts");
                }
                rows.sort_by_key(|x| x.0);
                let (mut m, mut g) = (p.m_in, 0u64);
                for (s, e) in rows {
                    let x = s.max(m);
                    if e > x {
                        g = g.wrapping_add((e as u64).wrapping_sub(x as u64));
                    }
                    m = m.max(e);
                }
                let add = if p.sign < 0 { 0u64.wrapping_sub(g) } else { g };
                self.out[p.slot as usize] = self.out[p.slot as usize].wrapping_add(add);
            }
            Ok(())
        }

        fn ranges(&mut self, buf: usize, tiles: &[Tile], n: usize) -> Result<Vec<(i64, i64)>, KernelsError> {
            let mut r = vec![(i64::MAX, i64::MIN); n];
            for t in tiles {
                for i in t.lo..t.hi {
                    let s = self.start[buf][i as usize];
                    let x = &mut r[t.problem as usize];
                    *x = (x.0.min(s), x.1.max(s));
                }
            }
            Ok(r)
        }

        fn bucket_stats(
            &mut self,
            buf: usize,
            tiles: &[Tile],
            splits: &[Split],
            buckets: usize,
        ) -> Result<(Vec<u32>, Vec<i64>), KernelsError> {
            self.levels += 1;
            let (mut c, mut m) = (vec![0u32; buckets], vec![i64::MIN; buckets]);
            for t in tiles {
                for i in t.lo as usize..t.hi as usize {
                    let b = Self::bucket(&splits[t.problem as usize], self.start[buf][i]);
                    c[b] += 1;
                    m[b] = m[b].max(self.end[buf][i]);
                }
            }
            Ok((c, m))
        }

        fn scatter(
            &mut self,
            buf: usize,
            tiles: &[Tile],
            splits: &[Split],
            cursors: &[u64],
        ) -> Result<(), KernelsError> {
            let mut cur = cursors.to_vec();
            // Reverse order: the device gives no order inside a bucket either.
            for t in tiles.iter().rev() {
                for i in (t.lo as usize..t.hi as usize).rev() {
                    let b = Self::bucket(&splits[t.problem as usize], self.start[buf][i]);
                    let pos = cur[b] as usize;
                    cur[b] += 1;
                    self.start[buf ^ 1][pos] = self.start[buf][i];
                    self.end[buf ^ 1][pos] = self.end[buf][i];
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::emulated::Emulated;
    use super::*;
    use crate::{Intervals, cpu};
    use proptest::prelude::*;

    fn emulated_union(offsets: &[usize], start: &[i64], end: &[i64], small: u32) -> (Vec<i64>, usize) {
        let off: Vec<u64> = offsets.iter().map(|&o| o as u64).collect();
        let mut problems = Vec::new();
        segment_problems(&off, 0, 0, 1, &mut problems);
        let mut dev = Emulated::new(start.to_vec(), end.to_vec(), offsets.len() - 1);
        run_union(&mut dev, problems, small).unwrap();
        (dev.out.iter().map(|&x| x as i64).collect(), dev.levels)
    }

    fn emulated_intersection(
        ao: &[usize],
        a: (&[i64], &[i64]),
        bo: &[usize],
        b: (&[i64], &[i64]),
        small: u32,
    ) -> Vec<i64> {
        let a_off: Vec<u64> = ao.iter().map(|&o| o as u64).collect();
        let b_off: Vec<u64> = bo.iter().map(|&o| o as u64).collect();
        let (na, nb) = (a.0.len() as u64, b.0.len() as u64);
        let n = 2 * (na + nb) as usize;
        let (mut s, mut e) = (vec![0; n], vec![0; n]);
        s[..na as usize].copy_from_slice(a.0);
        e[..na as usize].copy_from_slice(a.1);
        s[na as usize..(na + nb) as usize].copy_from_slice(b.0);
        e[na as usize..(na + nb) as usize].copy_from_slice(b.1);
        let mut dev = Emulated::new(s, e, ao.len() - 1);
        dev.interleave(na, nb, &a_off, &b_off);
        run_union(&mut dev, intersection_problems(&a_off, &b_off), small).unwrap();
        dev.out.iter().map(|&x| x as i64).collect()
    }

    /// Segments of random intervals; `spread` small makes many equal and
    /// nested starts, large makes wide ranges (bucket arithmetic near 2^63).
    fn segments(max_seg: usize, spread: i64) -> impl Strategy<Value = (Vec<usize>, Vec<i64>, Vec<i64>)> {
        prop::collection::vec(prop::collection::vec((-spread..spread, 0i64..spread.min(1 << 40)), 0..max_seg), 0..6)
            .prop_map(|segs| {
                let mut offsets = vec![0];
                let (mut s, mut e) = (Vec::new(), Vec::new());
                for seg in segs {
                    for (a, len) in seg {
                        s.push(a);
                        e.push(a.saturating_add(len));
                    }
                    offsets.push(s.len());
                }
                (offsets, s, e)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn planned_union_equals_cpu((offsets, s, e) in segments(60, 1000), small in 1u32..6) {
            let want = cpu::union_length(Intervals { offsets: &offsets, start: &s, end: &e });
            prop_assert_eq!(emulated_union(&offsets, &s, &e, small).0, want);
        }

        #[test]
        fn planned_union_handles_wide_ranges((offsets, s, e) in segments(40, i64::MAX / 4), small in 1u32..4) {
            let want = cpu::union_length(Intervals { offsets: &offsets, start: &s, end: &e });
            prop_assert_eq!(emulated_union(&offsets, &s, &e, small).0, want);
        }

        #[test]
        fn planned_intersection_equals_cpu((ao, as_, ae) in segments(30, 300), (bo0, bs, be) in segments(30, 300), small in 1u32..5) {
            // Give B the same number of segments as A.
            let nseg = ao.len() - 1;
            let mut bo: Vec<usize> = bo0.iter().copied().take(nseg + 1).collect();
            while bo.len() < nseg + 1 { bo.push(*bo.last().unwrap()); }
            let nb = bo[nseg];
            let (bs, be) = (&bs[..nb], &be[..nb]);
            let a = Intervals { offsets: &ao, start: &as_, end: &ae };
            let b = Intervals { offsets: &bo, start: bs, end: be };
            let want = cpu::intersection_length(a, b);
            prop_assert_eq!(emulated_intersection(&ao, (&as_, &ae), &bo, (bs, be), small), want);
        }
    }

    #[test]
    fn equal_starts_end_the_split_without_sorting() {
        // 100 intervals with one start: one level finds the constant range.
        let s = vec![5i64; 100];
        let e: Vec<i64> = (0..100).map(|i| 5 + i).collect();
        let (got, levels) = emulated_union(&[0, 100], &s, &e, 4);
        assert_eq!(got, vec![99]);
        assert_eq!(levels, 0);
    }

    #[test]
    fn uniform_starts_need_one_split_level() {
        let n = 100_000usize;
        let s: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % n as i64 * 10).collect();
        let e: Vec<i64> = s.iter().map(|x| x + 15).collect();
        let (got, levels) = emulated_union(&[0, n], &s, &e, SMALL);
        assert_eq!(got, cpu::union_length(Intervals { offsets: &[0, n], start: &s, end: &e }));
        assert_eq!(levels, 1);
    }

    #[test]
    fn row_chunks_cover_every_row_once_within_limits() {
        let offsets = [0usize, 0, 5, 5, 5, 17, 18, 40, 40];
        for max_rows in 1..20 {
            for max_segs in 1..5 {
                let chunks = row_chunks(&offsets, max_rows, max_segs);
                let mut next = 0;
                for c in &chunks {
                    assert_eq!(c.rows.start, next);
                    assert!(c.rows.len() <= max_rows && c.segs.len() <= max_segs && !c.rows.is_empty());
                    let off = c.offsets(&offsets);
                    assert_eq!((off[0], *off.last().unwrap()), (0, c.rows.len() as u64));
                    next = c.rows.end;
                }
                assert_eq!(next, 40);
            }
        }
    }

    #[test]
    fn whole_segment_chunks_keep_segments_together_and_set_giants_aside() {
        let rows = [3usize, 0, 9, 4, 4, 1, 20, 2];
        let (chunks, big) = whole_segment_chunks(rows.len(), |s| rows[s], 8, 3);
        assert_eq!(big, vec![2, 6]);
        assert_eq!(chunks, vec![0..2, 3..5, 5..6, 7..8]);
        for c in &chunks {
            assert!(c.clone().map(|s| rows[s]).sum::<usize>() <= 8 && c.len() <= 3);
        }
    }
}
