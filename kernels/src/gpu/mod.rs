//! GPU backend: the CUDA C in `kernels.cu`, compiled at run time by NVRTC
//! through `cudarc` (loaded dynamically: building needs no CUDA toolkit).
//!
//! - The probe never panics: it checks that libcuda and libnvrtc load before
//!   touching them and runs behind `catch_unwind` (cudarc panics on missing
//!   libraries or symbols). Its result, the compiled module included, is
//!   cached for the process.
//! - All work goes to one stream of the lowest priority, so the agent's
//!   reductions yield to the workload's kernels.
//! - Inputs are cut into chunks so device memory stays under the budget
//!   ([`DEFAULT_DEVICE_BUDGET`], see `Reducer::with_device_budget`).

pub(crate) mod plan;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};

use crate::{Histogram, Intervals, KernelsError, LogBuckets, Stats, Values, cpu};
use plan::{Problem, Split, Tile, UnionDevice};

/// Smallest batch (rows) for which `Backend::Auto` uses the GPU.
///
/// PROVISIONAL, from first principles until `bench/kernels_bench.sh` measures
/// the crossover on a GPU. A GPU call costs roughly 50–200 µs of launches,
/// allocations and synchronisations (more for unions, which round-trip per
/// split level) plus 8–16 B/row over PCIe (~20 GB/s from pageable memory:
/// 0.4–0.8 ns/row). The CPU backend, measured on a 2-core VM
/// (docs/performance.md), needs ~1–2 ns/row for sums, histograms and group
/// maxima and ~25 ns/row for unions. Break-even is then ~10⁴ rows for unions
/// and ~10⁵ for the cheap operations; 2¹⁶ sits between. Override it with
/// `Reducer::with_min_gpu_rows` or `kernels.min_gpu_rows`.
pub const AUTO_MIN_ROWS: usize = 1 << 16;

/// Device memory one call may use, by default (inputs, scratch and outputs).
pub const DEFAULT_DEVICE_BUDGET: usize = 1 << 30;

const SOURCE: &str = include_str!("kernels.cu");
/// `BT` and `TILE` in kernels.cu.
const BT: u32 = 256;
const TILE: u64 = 256 * 8;

unsafe impl DeviceRepr for Problem {}
unsafe impl DeviceRepr for Tile {}
unsafe impl DeviceRepr for Split {}

struct Functions {
    stats: CudaFunction,
    histogram: CudaFunction,
    group_max: CudaFunction,
    sync_stall: CudaFunction,
    solve_warp: CudaFunction,
    solve_block: CudaFunction,
    range: CudaFunction,
    bucket_stats: CudaFunction,
    scatter: CudaFunction,
    interleave: CudaFunction,
}

struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    f: Functions,
    description: String,
}

/// A usable GPU with the reduction kernels loaded. Cheap to clone.
#[derive(Clone)]
pub struct Gpu {
    dev: Arc<Device>,
    budget: usize,
}

static DEVICE: OnceLock<Result<Arc<Device>, String>> = OnceLock::new();

fn gpu_err(what: &str, e: impl std::fmt::Debug) -> KernelsError {
    KernelsError::Gpu(format!("{what}: {e:?}"))
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f`, turning a panic inside cudarc into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, KernelsError>) -> Result<T, KernelsError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(KernelsError::Gpu(format!("CUDA call panicked: {}", panic_text(&*p)))))
}

fn probe() -> Result<Device, String> {
    // SAFETY: only tries to open the shared libraries by name.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("libcuda (the NVIDIA driver library) was not found".into());
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err("libnvrtc (CUDA NVRTC runtime, libnvrtc.so.13 or .so.12) was not found".into());
    }
    let count = CudaContext::device_count().map_err(|e| format!("cannot count CUDA devices: {e:?}"))?;
    if count < 1 {
        return Err("the driver reports no CUDA device".into());
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("cannot open CUDA device 0: {e:?}"))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| format!("compute capability: {e:?}"))?;
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    // One stream and no cross-stream sharing: cudarc's per-buffer events would only add cost.
    // SAFETY: every buffer of this context is used on `stream` alone.
    unsafe { ctx.disable_event_tracking() };
    ctx.bind_to_thread().map_err(|e| format!("bind context: {e:?}"))?;
    let (lowest, _highest) =
        cudarc::driver::result::stream::get_priority_range().map_err(|e| format!("stream priorities: {e:?}"))?;
    let stream = ctx.new_stream_with_priority(lowest).map_err(|e| format!("create stream: {e:?}"))?;
    let ptx = compile(major, minor)?;
    let module = ctx.load_module(ptx).map_err(|e| {
        format!("load the compiled module on {name} (sm_{major}{minor}): {e:?} (is libnvrtc newer than the driver?)")
    })?;
    let load = |n: &str| module.load_function(n).map_err(|e| format!("kernel {n}: {e:?}"));
    let f = Functions {
        stats: load("stats_kernel")?,
        histogram: load("histogram_kernel")?,
        group_max: load("group_max_kernel")?,
        sync_stall: load("sync_stall_kernel")?,
        solve_warp: load("union_solve_warp")?,
        solve_block: load("union_solve_block")?,
        range: load("union_range")?,
        bucket_stats: load("union_bucket_stats")?,
        scatter: load("union_scatter")?,
        interleave: load("interleave_kernel")?,
    };
    Ok(Device { ctx, stream, f, description: format!("{name} (sm_{major}{minor}, {count} device(s), using device 0)") })
}

/// Compiles kernels.cu for the device's architecture, or for the oldest one
/// NVRTC 13 still supports when NVRTC does not know the device's.
pub fn compile(major: i32, minor: i32) -> Result<cudarc::nvrtc::Ptx, String> {
    let mut last = String::new();
    for arch in [format!("compute_{major}{minor}"), "compute_75".to_string()] {
        let opts = cudarc::nvrtc::CompileOptions {
            options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
            name: Some("strand_kernels.cu".into()),
            ..Default::default()
        };
        match catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts)) {
            Ok(Ok(ptx)) => return Ok(ptx),
            Ok(Err(e)) => last = format!("NVRTC failed for {arch}: {e}"),
            Err(p) => last = format!("NVRTC panicked for {arch}: {}", panic_text(&*p)),
        }
    }
    Err(last)
}

fn grid(n: u64, per_block: u64) -> Result<LaunchConfig, KernelsError> {
    let blocks = n.div_ceil(per_block).max(1);
    if blocks > i32::MAX as u64 {
        return Err(KernelsError::Gpu(format!("{blocks} blocks exceed the grid limit")));
    }
    Ok(LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (BT, 1, 1), shared_mem_bytes: 0 })
}

/// Grid of a grid-stride loop over `n` rows.
fn stride_grid(n: u64) -> LaunchConfig {
    let blocks = n.div_ceil(BT as u64).clamp(1, 65_536) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BT, 1, 1), shared_mem_bytes: 0 }
}

impl Gpu {
    /// The process's GPU, probed once. Never panics.
    pub fn open() -> Result<Self, KernelsError> {
        let dev = DEVICE.get_or_init(|| {
            catch_unwind(probe)
                .unwrap_or_else(|p| Err(format!("CUDA probe panicked: {}", panic_text(&*p))))
                .map(Arc::new)
        });
        match dev {
            Ok(d) => Ok(Gpu { dev: d.clone(), budget: DEFAULT_DEVICE_BUDGET }),
            Err(why) => Err(KernelsError::GpuUnavailable(why.clone())),
        }
    }

    /// GPU model, architecture and device count, for logs and reports.
    pub fn description(&self) -> &str {
        &self.dev.description
    }

    /// Limits one call's device memory to about `bytes` (at least 1 MiB).
    pub fn with_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes.max(1 << 20);
        self
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    fn stream(&self) -> &Arc<CudaStream> {
        &self.dev.stream
    }

    fn up<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, KernelsError> {
        self.stream().clone_htod(host).map_err(|e| gpu_err("copy to device", e))
    }

    fn down<T: DeviceRepr + Default + Clone>(&self, dev: &CudaSlice<T>) -> Result<Vec<T>, KernelsError> {
        self.stream().clone_dtoh(dev).map_err(|e| gpu_err("copy from device", e))
    }

    fn zeros<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>, KernelsError> {
        self.stream().alloc_zeros(n.max(1)).map_err(|e| gpu_err("allocate", e))
    }

    /// Surfaces errors of asynchronous work and of buffer frees.
    fn finish(&self) -> Result<(), KernelsError> {
        self.stream().synchronize().map_err(|e| gpu_err("synchronize", e))?;
        self.dev.ctx.check_err().map_err(|e| gpu_err("deferred CUDA error", e))
    }

    pub fn stats(&self, v: Values) -> Result<Vec<Stats>, KernelsError> {
        guarded(|| {
            let mut out: Vec<Stats> =
                v.offsets.windows(2).map(|w| Stats { count: (w[1] - w[0]) as u64, ..Stats::default() }).collect();
            let half = self.budget / 2;
            for c in plan::row_chunks(v.offsets, half / 8, half / 32) {
                let off = c.offsets(v.offsets);
                let vals = self.up(&v.values[c.rows.clone()])?;
                let doff = self.up(&off)?;
                let n = c.segs.len();
                let sum = self.zeros::<u64>(n)?;
                let mn = self.up(&vec![i64::MAX; n])?;
                let mx = self.up(&vec![i64::MIN; n])?;
                let rows = c.rows.len() as u64;
                let nseg = n as u32;
                let mut l = self.stream().launch_builder(&self.dev.f.stats);
                l.arg(&vals).arg(&rows).arg(&doff).arg(&nseg).arg(&sum).arg(&mn).arg(&mx);
                // SAFETY: argument list matches stats_kernel; buffers hold `rows` values and `n` segments.
                unsafe { l.launch(grid(rows, TILE)?) }.map_err(|e| gpu_err("launch stats_kernel", e))?;
                let (sum, mn, mx) = (self.down(&sum)?, self.down(&mn)?, self.down(&mx)?);
                for k in 0..n {
                    if off[k + 1] > off[k] {
                        let o = &mut out[c.segs.start + k];
                        o.sum = o.sum.wrapping_add(sum[k] as i64);
                        o.min = Some(o.min.map_or(mn[k], |m| m.min(mn[k])));
                        o.max = Some(o.max.map_or(mx[k], |m| m.max(mx[k])));
                    }
                }
            }
            self.finish()?;
            Ok(out)
        })
    }

    pub fn histogram(&self, v: Values, buckets: LogBuckets) -> Result<Histogram, KernelsError> {
        guarded(|| {
            let nb = buckets.len();
            let segments = v.offsets.len() - 1;
            let mut counts = vec![0u64; segments * nb];
            let half = self.budget / 2;
            for c in plan::row_chunks(v.offsets, half / 8, half / (nb * 8)) {
                let off = c.offsets(v.offsets);
                let vals = self.up(&v.values[c.rows.clone()])?;
                let doff = self.up(&off)?;
                let n = c.segs.len();
                let dcounts = self.zeros::<u64>(n * nb)?;
                let (rows, nseg, sub, nbu) = (c.rows.len() as u64, n as u32, buckets.sub_bits, nb as u32);
                let mut l = self.stream().launch_builder(&self.dev.f.histogram);
                l.arg(&vals).arg(&rows).arg(&doff).arg(&nseg).arg(&sub).arg(&nbu).arg(&dcounts);
                // SAFETY: matches histogram_kernel; dcounts holds n * nb counters.
                unsafe { l.launch(grid(rows, TILE)?) }.map_err(|e| gpu_err("launch histogram_kernel", e))?;
                let part = self.down(&dcounts)?;
                let dst = &mut counts[c.segs.start * nb..c.segs.end * nb];
                for (d, p) in dst.iter_mut().zip(&part) {
                    *d += p;
                }
            }
            self.finish()?;
            Ok(Histogram { buckets, segments, counts })
        })
    }

    /// Latest value per group for groups `[g0, g0 + ng)`, over all row chunks.
    /// Returns the device buffers (max, present).
    fn group_max_pass(
        &self,
        chunks: &[std::ops::Range<usize>],
        group: &[u32],
        values: &[i64],
        g0: u32,
        ng: usize,
    ) -> Result<(CudaSlice<i64>, CudaSlice<u32>), KernelsError> {
        let mx = self.up(&vec![i64::MIN; ng.max(1)])?;
        let present = self.zeros::<u32>(ng)?;
        for r in chunks {
            let dg = self.up(&group[r.clone()])?;
            let dv = self.up(&values[r.clone()])?;
            let (rows, ngu) = (r.len() as u64, ng as u32);
            let mut l = self.stream().launch_builder(&self.dev.f.group_max);
            l.arg(&dg).arg(&dv).arg(&rows).arg(&g0).arg(&ngu).arg(&mx).arg(&present);
            // SAFETY: matches group_max_kernel; mx/present hold ng entries.
            unsafe { l.launch(stride_grid(rows)) }.map_err(|e| gpu_err("launch group_max_kernel", e))?;
        }
        Ok((mx, present))
    }

    pub fn max_per_group(
        &self,
        group: &[u32],
        values: &[i64],
        groups: usize,
    ) -> Result<Vec<Option<i64>>, KernelsError> {
        guarded(|| {
            let half = self.budget / 2;
            let chunks = plan::plain_chunks(values.len(), half / 12);
            let mut out = Vec::with_capacity(groups);
            for gr in plan::plain_chunks(groups, half / 12) {
                let (mx, present) = self.group_max_pass(&chunks, group, values, gr.start as u32, gr.len())?;
                let (mx, present) = (self.down(&mx)?, self.down(&present)?);
                out.extend((0..gr.len()).map(|k| (present[k] != 0).then_some(mx[k])));
            }
            self.finish()?;
            Ok(out)
        })
    }

    pub fn sync_stall(
        &self,
        group: &[u32],
        start: &[i64],
        duration: &[i64],
        groups: usize,
    ) -> Result<Vec<i64>, KernelsError> {
        guarded(|| {
            let rows = start.len();
            let mut out = vec![0i64; rows];
            let quarter = self.budget / 4;
            let chunks = plan::plain_chunks(rows, quarter / 28);
            let passes = plan::plain_chunks(groups, quarter / 12);
            for gr in &passes {
                let (g0, ng) = (gr.start as u32, gr.len() as u32);
                let (latest, _present) = self.group_max_pass(&chunks, group, start, g0, gr.len())?;
                for r in &chunks {
                    let dg = self.up(&group[r.clone()])?;
                    let ds = self.up(&start[r.clone()])?;
                    let dd = self.up(&duration[r.clone()])?;
                    // Rows of other passes keep -1 (no stall is negative).
                    let dout = self.up(&vec![-1i64; r.len()])?;
                    let n = r.len() as u64;
                    let mut l = self.stream().launch_builder(&self.dev.f.sync_stall);
                    l.arg(&dg).arg(&ds).arg(&dd).arg(&n).arg(&g0).arg(&ng).arg(&latest).arg(&dout);
                    // SAFETY: matches sync_stall_kernel; every buffer holds n rows, latest ng groups.
                    unsafe { l.launch(stride_grid(n)) }.map_err(|e| gpu_err("launch sync_stall_kernel", e))?;
                    let part = self.down(&dout)?;
                    for (o, p) in out[r.clone()].iter_mut().zip(part) {
                        if p >= 0 {
                            *o = p;
                        }
                    }
                }
            }
            self.finish()?;
            Ok(out)
        })
    }

    /// Rows per union chunk: two (start, end) buffers, problem lists and
    /// bucket arrays, about 80 B per row.
    fn union_rows(&self) -> usize {
        (self.budget / 80).clamp(1, u32::MAX as usize / 2)
    }

    pub fn union_length(&self, iv: Intervals) -> Result<Vec<i64>, KernelsError> {
        guarded(|| {
            let o = iv.offsets;
            let nseg = o.len() - 1;
            let mut out = vec![0i64; nseg];
            let (chunks, oversized) =
                plan::whole_segment_chunks(nseg, |s| o[s + 1] - o[s], self.union_rows(), self.union_rows());
            for s in oversized {
                tracing::debug!(
                    "kernels: segment {s} ({} rows) exceeds the device budget; its union runs on the CPU",
                    o[s + 1] - o[s]
                );
                let seg = Intervals {
                    offsets: &[0, o[s + 1] - o[s]],
                    start: &iv.start[o[s]..o[s + 1]],
                    end: &iv.end[o[s]..o[s + 1]],
                };
                out[s] = cpu::union_length(seg)[0];
            }
            for c in chunks {
                let (r0, r1) = (o[c.start], o[c.end]);
                if r1 == r0 {
                    continue;
                }
                let off: Vec<u64> = o[c.start..=c.end].iter().map(|&x| (x - r0) as u64).collect();
                let mut dev = CudaUnion::new(self, r1 - r0, c.len())?;
                dev.load(0, &iv.start[r0..r1], &iv.end[r0..r1])?;
                let mut problems = Vec::new();
                plan::segment_problems(&off, 0, 0, 1, &mut problems);
                plan::run_union(&mut dev, problems, plan::SMALL)?;
                for (k, v) in self.down(&dev.out)?.into_iter().take(c.len()).enumerate() {
                    out[c.start + k] = v as i64;
                }
            }
            self.finish()?;
            Ok(out)
        })
    }

    pub fn intersection_length(&self, a: Intervals, b: Intervals) -> Result<Vec<i64>, KernelsError> {
        guarded(|| {
            let (ao, bo) = (a.offsets, b.offsets);
            let nseg = ao.len() - 1;
            let mut out = vec![0i64; nseg];
            let rows_of = |s: usize| ao[s + 1] - ao[s] + bo[s + 1] - bo[s];
            let max_rows = self.union_rows() / 2;
            let (chunks, oversized) = plan::whole_segment_chunks(nseg, rows_of, max_rows, max_rows);
            for s in oversized {
                tracing::debug!(
                    "kernels: segment {s} ({} rows) exceeds the device budget; its intersection runs on the CPU",
                    rows_of(s)
                );
                let sa = Intervals {
                    offsets: &[0, ao[s + 1] - ao[s]],
                    start: &a.start[ao[s]..ao[s + 1]],
                    end: &a.end[ao[s]..ao[s + 1]],
                };
                let sb = Intervals {
                    offsets: &[0, bo[s + 1] - bo[s]],
                    start: &b.start[bo[s]..bo[s + 1]],
                    end: &b.end[bo[s]..bo[s + 1]],
                };
                out[s] = cpu::intersection_length(sa, sb)[0];
            }
            for c in chunks {
                let (ar, br) = (ao[c.start]..ao[c.end], bo[c.start]..bo[c.end]);
                let (na, nb) = (ar.len(), br.len());
                if na == 0 || nb == 0 {
                    continue; // an empty side: every intersection in the chunk is 0
                }
                let a_off: Vec<u64> = ao[c.start..=c.end].iter().map(|&x| (x - ar.start) as u64).collect();
                let b_off: Vec<u64> = bo[c.start..=c.end].iter().map(|&x| (x - br.start) as u64).collect();
                let mut dev = CudaUnion::new(self, 2 * (na + nb), c.len())?;
                dev.load(0, &a.start[ar.clone()], &a.end[ar])?;
                dev.load(na, &b.start[br.clone()], &b.end[br])?;
                dev.interleave(na as u64, nb as u64, &a_off, &b_off)?;
                plan::run_union(&mut dev, plan::intersection_problems(&a_off, &b_off), plan::SMALL)?;
                for (k, v) in self.down(&dev.out)?.into_iter().take(c.len()).enumerate() {
                    out[c.start + k] = v as i64;
                }
            }
            self.finish()?;
            Ok(out)
        })
    }
}

/// Device state of one union chunk: two (start, end) buffers and the output slots.
struct CudaUnion<'a> {
    gpu: &'a Gpu,
    start: [CudaSlice<i64>; 2],
    end: [CudaSlice<i64>; 2],
    out: CudaSlice<u64>,
}

impl<'a> CudaUnion<'a> {
    fn new(gpu: &'a Gpu, rows: usize, slots: usize) -> Result<Self, KernelsError> {
        let alloc = |n: usize| -> Result<CudaSlice<i64>, KernelsError> {
            // SAFETY: every row is written (load, interleave or scatter) before it is read.
            unsafe { gpu.stream().alloc::<i64>(n.max(1)) }.map_err(|e| gpu_err("allocate", e))
        };
        Ok(Self {
            gpu,
            start: [alloc(rows)?, alloc(rows)?],
            end: [alloc(rows)?, alloc(rows)?],
            out: gpu.zeros::<u64>(slots)?,
        })
    }

    /// Copies rows into buffer 0 at row `at`.
    fn load(&mut self, at: usize, start: &[i64], end: &[i64]) -> Result<(), KernelsError> {
        let s = self.gpu.stream();
        let n = start.len();
        s.memcpy_htod(start, &mut self.start[0].slice_mut(at..at + n)).map_err(|e| gpu_err("copy to device", e))?;
        s.memcpy_htod(end, &mut self.end[0].slice_mut(at..at + n)).map_err(|e| gpu_err("copy to device", e))
    }

    fn interleave(&mut self, na: u64, nb: u64, a_off: &[u64], b_off: &[u64]) -> Result<(), KernelsError> {
        let (da, db) = (self.gpu.up(a_off)?, self.gpu.up(b_off)?);
        let nseg = (a_off.len() - 1) as u32;
        let base = na + nb;
        let mut l = self.gpu.stream().launch_builder(&self.gpu.dev.f.interleave);
        l.arg(&self.start[0]).arg(&self.end[0]).arg(&na).arg(&nb).arg(&da).arg(&db).arg(&nseg).arg(&base);
        // SAFETY: matches interleave_kernel; buffer 0 holds 2 (na + nb) rows.
        unsafe { l.launch(stride_grid(na + nb)) }.map_err(|e| gpu_err("launch interleave_kernel", e))?;
        Ok(())
    }
}

impl UnionDevice for CudaUnion<'_> {
    fn solve(&mut self, buf: usize, problems: &[Problem]) -> Result<(), KernelsError> {
        let (warp, block): (Vec<Problem>, Vec<Problem>) =
            problems.iter().partition(|p| p.len <= plan::WARP_ROWS && p.flags & plan::CONSTANT == 0);
        let f = &self.gpu.dev.f;
        for (list, func, per_block) in [(warp, &f.solve_warp, (BT / 32) as u64), (block, &f.solve_block, 1)] {
            if list.is_empty() {
                continue;
            }
            let dp = self.gpu.up(&list)?;
            let n = list.len() as u32;
            let mut l = self.gpu.stream().launch_builder(func);
            l.arg(&self.start[buf]).arg(&self.end[buf]).arg(&dp).arg(&n).arg(&self.out);
            // SAFETY: matches union_solve_warp / union_solve_block; problems index rows of `buf`.
            unsafe { l.launch(grid(n as u64, per_block)?) }.map_err(|e| gpu_err("launch union solve", e))?;
        }
        Ok(())
    }

    fn ranges(&mut self, buf: usize, tiles: &[Tile], n: usize) -> Result<Vec<(i64, i64)>, KernelsError> {
        let dt = self.gpu.up(tiles)?;
        let lo = self.gpu.up(&vec![i64::MAX; n])?;
        let hi = self.gpu.up(&vec![i64::MIN; n])?;
        let nt = tiles.len() as u32;
        let mut l = self.gpu.stream().launch_builder(&self.gpu.dev.f.range);
        l.arg(&self.start[buf]).arg(&dt).arg(&nt).arg(&lo).arg(&hi);
        // SAFETY: matches union_range; tiles index rows of `buf` and n problems.
        unsafe { l.launch(grid(nt as u64, 1)?) }.map_err(|e| gpu_err("launch union_range", e))?;
        Ok(self.gpu.down(&lo)?.into_iter().zip(self.gpu.down(&hi)?).collect())
    }

    fn bucket_stats(
        &mut self,
        buf: usize,
        tiles: &[Tile],
        splits: &[Split],
        buckets: usize,
    ) -> Result<(Vec<u32>, Vec<i64>), KernelsError> {
        let (dt, ds) = (self.gpu.up(tiles)?, self.gpu.up(splits)?);
        let count = self.gpu.zeros::<u32>(buckets)?;
        let maxend = self.gpu.up(&vec![i64::MIN; buckets])?;
        let nt = tiles.len() as u32;
        let mut l = self.gpu.stream().launch_builder(&self.gpu.dev.f.bucket_stats);
        l.arg(&self.start[buf]).arg(&self.end[buf]).arg(&dt).arg(&nt).arg(&ds).arg(&count).arg(&maxend);
        // SAFETY: matches union_bucket_stats; bucket indices stay below `buckets` (plan::split_level).
        unsafe { l.launch(grid(nt as u64, 1)?) }.map_err(|e| gpu_err("launch union_bucket_stats", e))?;
        let mut c = self.gpu.down(&count)?;
        c.truncate(buckets);
        let mut m = self.gpu.down(&maxend)?;
        m.truncate(buckets);
        Ok((c, m))
    }

    fn scatter(&mut self, buf: usize, tiles: &[Tile], splits: &[Split], cursors: &[u64]) -> Result<(), KernelsError> {
        let (dt, ds, dc) = (self.gpu.up(tiles)?, self.gpu.up(splits)?, self.gpu.up(cursors)?);
        let nt = tiles.len() as u32;
        let mut l = self.gpu.stream().launch_builder(&self.gpu.dev.f.scatter);
        l.arg(&self.start[buf])
            .arg(&self.end[buf])
            .arg(&dt)
            .arg(&nt)
            .arg(&ds)
            .arg(&dc)
            .arg(&self.start[buf ^ 1])
            .arg(&self.end[buf ^ 1]);
        // SAFETY: matches union_scatter; cursors stay inside the scattered problems' rows.
        unsafe { l.launch(grid(nt as u64, 1)?) }.map_err(|e| gpu_err("launch union_scatter", e))?;
        Ok(())
    }
}

/// Device-side timing for `bench/kernels_bench.sh`: not part of the stable API.
#[doc(hidden)]
pub mod bench {
    use super::*;

    /// Median over `reps` of `f` timed with CUDA events on the reducer's stream
    /// (after `warmup` untimed runs), in milliseconds.
    pub fn time_ms(
        gpu: &Gpu,
        warmup: usize,
        reps: usize,
        mut f: impl FnMut() -> Result<(), KernelsError>,
    ) -> Result<f64, KernelsError> {
        guarded(|| {
            for _ in 0..warmup {
                f()?;
            }
            let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
            let mut ms = Vec::with_capacity(reps);
            for _ in 0..reps.max(1) {
                let a = gpu.stream().record_event(flags).map_err(|e| gpu_err("event", e))?;
                f()?;
                let b = gpu.stream().record_event(flags).map_err(|e| gpu_err("event", e))?;
                ms.push(a.elapsed_ms(&b).map_err(|e| gpu_err("event time", e))? as f64);
            }
            gpu.finish()?;
            ms.sort_by(f64::total_cmp);
            Ok(ms[ms.len() / 2])
        })
    }

    /// Device-to-device copy bandwidth in GB/s (bytes read + written), the
    /// ceiling the reductions are compared with.
    pub fn d2d_copy_gbps(gpu: &Gpu, bytes: usize) -> Result<f64, KernelsError> {
        let n = bytes / 8;
        let src =
            gpu.up(&(0..n as i64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64) | 1).collect::<Vec<_>>())?;
        let mut dst = gpu.zeros::<i64>(n)?;
        let ms = time_ms(gpu, 3, 20, || gpu.stream().memcpy_dtod(&src, &mut dst).map_err(|e| gpu_err("copy", e)))?;
        Ok(2.0 * (n * 8) as f64 / (ms * 1e6))
    }

    /// Values resident on the device, for timing the kernels without transfers.
    pub struct Resident {
        vals: CudaSlice<i64>,
        off: CudaSlice<u64>,
        rows: u64,
        nseg: u32,
    }

    pub fn resident(gpu: &Gpu, v: Values) -> Result<Resident, KernelsError> {
        let off: Vec<u64> = v.offsets.iter().map(|&o| o as u64).collect();
        Ok(Resident {
            vals: gpu.up(v.values)?,
            off: gpu.up(&off)?,
            rows: v.values.len() as u64,
            nseg: (off.len() - 1) as u32,
        })
    }

    /// One stats_kernel launch over resident values (outputs re-initialised).
    pub fn stats_device(gpu: &Gpu, r: &Resident) -> Result<(), KernelsError> {
        let n = r.nseg as usize;
        let sum = gpu.zeros::<u64>(n)?;
        let mn = gpu.zeros::<i64>(n)?;
        let mx = gpu.zeros::<i64>(n)?;
        let mut l = gpu.stream().launch_builder(&gpu.dev.f.stats);
        l.arg(&r.vals).arg(&r.rows).arg(&r.off).arg(&r.nseg).arg(&sum).arg(&mn).arg(&mx);
        // SAFETY: as in Gpu::stats.
        unsafe { l.launch(grid(r.rows, TILE)?) }.map_err(|e| gpu_err("launch stats_kernel", e))?;
        Ok(())
    }

    /// One histogram_kernel launch over resident values.
    pub fn histogram_device(gpu: &Gpu, r: &Resident, buckets: LogBuckets) -> Result<(), KernelsError> {
        let nb = buckets.len();
        let counts = gpu.zeros::<u64>(r.nseg as usize * nb)?;
        let (sub, nbu) = (buckets.sub_bits, nb as u32);
        let mut l = gpu.stream().launch_builder(&gpu.dev.f.histogram);
        l.arg(&r.vals).arg(&r.rows).arg(&r.off).arg(&r.nseg).arg(&sub).arg(&nbu).arg(&counts);
        // SAFETY: as in Gpu::histogram.
        unsafe { l.launch(grid(r.rows, TILE)?) }.map_err(|e| gpu_err("launch histogram_kernel", e))?;
        Ok(())
    }

    /// Union of resident intervals (copied into scratch buffer 0 once per
    /// run with a device-to-device copy, which the timing includes).
    pub struct ResidentIntervals<'a> {
        dev: CudaUnion<'a>,
        start: CudaSlice<i64>,
        end: CudaSlice<i64>,
        off: Vec<u64>,
    }

    pub fn resident_intervals<'a>(gpu: &'a Gpu, iv: Intervals) -> Result<ResidentIntervals<'a>, KernelsError> {
        let off: Vec<u64> = iv.offsets.iter().map(|&o| o as u64).collect();
        Ok(ResidentIntervals {
            dev: CudaUnion::new(gpu, iv.start.len(), off.len() - 1)?,
            start: gpu.up(iv.start)?,
            end: gpu.up(iv.end)?,
            off,
        })
    }

    /// Restores the scratch copy of the input (a split level may overwrite
    /// it): time this alone and subtract it from [`union_device`].
    pub fn union_restore(r: &mut ResidentIntervals) -> Result<(), KernelsError> {
        let s = r.dev.gpu.stream().clone();
        s.memcpy_dtod(&r.start, &mut r.dev.start[0]).map_err(|e| gpu_err("copy", e))?;
        s.memcpy_dtod(&r.end, &mut r.dev.end[0]).map_err(|e| gpu_err("copy", e))?;
        s.memset_zeros(&mut r.dev.out).map_err(|e| gpu_err("memset", e))
    }

    /// [`union_restore`], then the whole union (planner round trips included).
    pub fn union_device(r: &mut ResidentIntervals) -> Result<(), KernelsError> {
        union_restore(r)?;
        let mut problems = Vec::new();
        plan::segment_problems(&r.off, 0, 0, 1, &mut problems);
        plan::run_union(&mut r.dev, problems, plan::SMALL)
    }

    /// The union result of the last `union_device` run.
    pub fn union_result(r: &ResidentIntervals) -> Result<Vec<i64>, KernelsError> {
        Ok(r.dev.gpu.down(&r.dev.out)?.into_iter().take(r.off.len() - 1).map(|v| v as i64).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs only libnvrtc (no GPU): `LD_LIBRARY_PATH` pointing at the
    /// `nvidia-cuda-nvrtc` wheel's lib/ is enough. Ignored by default (CI has
    /// no libnvrtc); run with `--ignored`, where it fails without libnvrtc.
    #[test]
    #[ignore = "needs libnvrtc: run with --ignored where it is installed (bench/gpu/validate.sh)"]
    fn embedded_cuda_compiles_with_nvrtc() {
        // SAFETY: only tries to open the library.
        assert!(
            unsafe { cudarc::nvrtc::sys::is_culib_present() },
            "libnvrtc not found: point LD_LIBRARY_PATH at the nvidia-cuda-nvrtc wheel's lib/"
        );
        for (major, minor) in [(7, 5), (8, 0), (9, 0)] {
            let ptx = compile(major, minor).unwrap_or_else(|e| panic!("sm_{major}{minor}: {e}"));
            let text = ptx.to_src();
            for k in [
                "stats_kernel",
                "histogram_kernel",
                "union_solve_warp",
                "union_solve_block",
                "union_scatter",
                "interleave_kernel",
            ] {
                assert!(text.contains(k), "{k} missing from the PTX for sm_{major}{minor}");
            }
        }
    }
}
