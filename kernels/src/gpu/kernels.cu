// strand-kernels: device side of the reductions (DESIGN §7).
// Compiled at run time by NVRTC (see gpu/mod.rs). Integer arithmetic only, so
// every result equals the CPU backend's bit for bit. Sums wrap modulo 2^64,
// exactly like the CPU's wrapping_add.
//
// Layout conventions shared with the host (gpu/mod.rs, gpu/plan.rs):
// - "offsets" are u64, chunk-relative, nseg + 1 entries, offsets[0] == 0.
// - Problem, Tile and Split match the #[repr(C)] structs in plan.rs.

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

#define I64_MAX 0x7fffffffffffffffLL
#define I64_MIN (-I64_MAX - 1LL)
#define FULL 0xffffffffu

// Threads per block of every kernel except union_solve_warp (any multiple of 32).
#define BT 256
// Rows per block tile of the streaming kernels (stats, histogram).
#define ITEMS 8
#define TILE (BT * ITEMS)
// Largest union problem sorted in shared memory: keep equal to plan::SMALL.
#define SMALL 2048
// Largest histogram kept in shared memory (buckets).
#define SMEM_BUCKETS 4096

struct Problem { u64 off; i64 m_in; u32 len; u32 slot; int sign; u32 flags; };
struct Tile { u64 lo; u64 hi; u32 problem; u32 pad; };
struct Split { i64 lo; u64 width; u32 base; u32 pad; };

__device__ __forceinline__ i64 imax(i64 a, i64 b) { return a > b ? a : b; }
__device__ __forceinline__ i64 imin(i64 a, i64 b) { return a < b ? a : b; }

// Segment of row i: the largest s < nseg with off[s] <= i (skips empty segments).
__device__ __forceinline__ u32 seg_of(const u64* off, u32 nseg, u64 i) {
    u32 lo = 0, hi = nseg;
    while (hi - lo > 1) {
        u32 mid = lo + (hi - lo) / 2;
        if (off[mid] <= i) lo = mid; else hi = mid;
    }
    return lo;
}

// max(0, e - max(s, m)) as a wrapping u64 (no signed overflow).
__device__ __forceinline__ u64 gain(i64 s, i64 e, i64 m) {
    i64 x = imax(s, m);
    return e > x ? (u64)e - (u64)x : 0ull;
}

__device__ __forceinline__ i64 warp_max(i64 v) {
    for (int d = 16; d > 0; d >>= 1) v = imax(v, __shfl_xor_sync(FULL, v, d));
    return v;
}
__device__ __forceinline__ i64 warp_min(i64 v) {
    for (int d = 16; d > 0; d >>= 1) v = imin(v, __shfl_xor_sync(FULL, v, d));
    return v;
}
__device__ __forceinline__ u64 warp_sum(u64 v) {
    for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(FULL, v, d);
    return v;
}

// Block reductions for blockDim.x == BT; every thread must call them. The
// result is valid in every thread.
__device__ i64 block_max(i64 v, i64* red) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    i64 r = red[0];
    for (int w = 1; w < BT / 32; w++) r = imax(r, red[w]);
    __syncthreads();
    return r;
}
__device__ i64 block_min(i64 v, i64* red) {
    v = warp_min(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    i64 r = red[0];
    for (int w = 1; w < BT / 32; w++) r = imin(r, red[w]);
    __syncthreads();
    return r;
}
__device__ u64 block_sum(u64 v, u64* red) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    u64 r = 0;
    for (int w = 0; w < BT / 32; w++) r += red[w];
    __syncthreads();
    return r;
}

// ---------------------------------------------------------------- stats --
// Per segment: wrapping sum, min, max (count comes from the offsets on the
// host). out_min/out_max start at I64_MAX/I64_MIN, out_sum at 0.
// A block tile inside one segment reduces in the block and does 3 atomics;
// a tile that crosses segments flushes per thread at each segment change.
extern "C" __global__ void __launch_bounds__(BT) stats_kernel(
    const i64* __restrict__ v, u64 rows, const u64* __restrict__ off, u32 nseg,
    u64* __restrict__ out_sum, i64* __restrict__ out_min, i64* __restrict__ out_max)
{
    __shared__ u32 tile_seg[2];
    __shared__ i64 red[BT / 32];
    __shared__ u64 redu[BT / 32];
    u64 t0 = (u64)blockIdx.x * TILE;
    if (t0 >= rows) return;  // uniform per block
    u64 t1 = t0 + TILE < rows ? t0 + TILE : rows;
    if (threadIdx.x == 0) {
        tile_seg[0] = seg_of(off, nseg, t0);
        tile_seg[1] = seg_of(off, nseg, t1 - 1);
    }
    __syncthreads();
    u32 s0 = tile_seg[0], s1 = tile_seg[1];
    if (s0 == s1) {
        u64 sum = 0; i64 mn = I64_MAX, mx = I64_MIN;
        for (u64 i = t0 + threadIdx.x; i < t1; i += BT) {
            i64 x = v[i];
            sum += (u64)x; mn = imin(mn, x); mx = imax(mx, x);
        }
        sum = block_sum(sum, redu);
        mn = block_min(mn, red);
        mx = block_max(mx, red);
        if (threadIdx.x == 0) {
            atomicAdd(&out_sum[s0], sum);
            atomicMin(&out_min[s0], mn);
            atomicMax(&out_max[s0], mx);
        }
        return;
    }
    // Each thread: ITEMS consecutive rows.
    u64 a = t0 + (u64)threadIdx.x * ITEMS;
    if (a >= t1) return;
    u64 b = a + ITEMS < t1 ? a + ITEMS : t1;
    u32 s = seg_of(off, nseg, a);
    u64 next = off[s + 1];
    u64 sum = 0; i64 mn = I64_MAX, mx = I64_MIN;
    for (u64 i = a; i < b; i++) {
        if (i >= next) {
            atomicAdd(&out_sum[s], sum); atomicMin(&out_min[s], mn); atomicMax(&out_max[s], mx);
            sum = 0; mn = I64_MAX; mx = I64_MIN;
            while (off[s + 1] <= i) s++;
            next = off[s + 1];
        }
        i64 x = v[i];
        sum += (u64)x; mn = imin(mn, x); mx = imax(mx, x);
    }
    atomicAdd(&out_sum[s], sum); atomicMin(&out_min[s], mn); atomicMax(&out_max[s], mx);
}

// ------------------------------------------------------------ histogram --
// Same bucketing as LogBuckets::bucket in lib.rs, bit for bit.
__device__ __forceinline__ u32 log_bucket(i64 x, u32 sub_bits) {
    if (x <= 0) return 0;
    u64 u = (u64)x;
    u32 e = 63u - (u32)__clzll(x);
    if (e < sub_bits) return (u32)u;
    u64 m = (u >> (e - sub_bits)) & ((1ull << sub_bits) - 1ull);
    return ((e - sub_bits + 1u) << sub_bits) | (u32)m;
}

// counts[s * nbuckets + b], zeroed by the host.
extern "C" __global__ void __launch_bounds__(BT) histogram_kernel(
    const i64* __restrict__ v, u64 rows, const u64* __restrict__ off, u32 nseg,
    u32 sub_bits, u32 nbuckets, u64* __restrict__ counts)
{
    __shared__ u32 tile_seg[2];
    __shared__ u32 local[SMEM_BUCKETS];
    u64 t0 = (u64)blockIdx.x * TILE;
    if (t0 >= rows) return;
    u64 t1 = t0 + TILE < rows ? t0 + TILE : rows;
    if (threadIdx.x == 0) {
        tile_seg[0] = seg_of(off, nseg, t0);
        tile_seg[1] = seg_of(off, nseg, t1 - 1);
    }
    __syncthreads();
    u32 s0 = tile_seg[0], s1 = tile_seg[1];
    if (s0 == s1 && nbuckets <= SMEM_BUCKETS) {
        for (u32 k = threadIdx.x; k < nbuckets; k += BT) local[k] = 0;
        __syncthreads();
        for (u64 i = t0 + threadIdx.x; i < t1; i += BT) atomicAdd(&local[log_bucket(v[i], sub_bits)], 1u);
        __syncthreads();
        u64* dst = counts + (u64)s0 * nbuckets;
        for (u32 k = threadIdx.x; k < nbuckets; k += BT) {
            u32 c = local[k];
            if (c) atomicAdd(&dst[k], (u64)c);
        }
        return;
    }
    for (u64 i = t0 + threadIdx.x; i < t1; i += BT) {
        u32 s = s0 == s1 ? s0 : seg_of(off, nseg, i);
        atomicAdd(&counts[(u64)s * nbuckets + log_bucket(v[i], sub_bits)], 1ull);
    }
}

// --------------------------------------------------------- group maxima --
// Rows whose group lies in [g0, g0 + ng) update mx[g - g0] (starts at I64_MIN)
// and mark present[g - g0].
extern "C" __global__ void group_max_kernel(
    const u32* __restrict__ group, const i64* __restrict__ v, u64 rows, u32 g0, u32 ng,
    i64* __restrict__ mx, u32* __restrict__ present)
{
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < rows; i += (u64)gridDim.x * blockDim.x) {
        u32 g = group[i] - g0;  // wraps above ng when group[i] < g0
        if (g < ng) {
            atomicMax(&mx[g], v[i]);
            if (present[g] == 0) atomicExch(&present[g], 1u);
        }
    }
}

// DESIGN §4: stall = clamp(min(duration, latest - start), 0). Rows outside
// the group range are left as they are (the host poisoned them with -1).
extern "C" __global__ void sync_stall_kernel(
    const u32* __restrict__ group, const i64* __restrict__ start, const i64* __restrict__ duration,
    u64 rows, u32 g0, u32 ng, const i64* __restrict__ latest, i64* __restrict__ out)
{
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < rows; i += (u64)gridDim.x * blockDim.x) {
        u32 g = group[i] - g0;
        if (g < ng) {
            i64 wait = (i64)((u64)latest[g] - (u64)start[i]);
            i64 d = duration[i];
            i64 r = wait < d ? wait : d;
            out[i] = r > 0 ? r : 0;
        }
    }
}

// ---------------------------------------------------------------- union --
// A union problem is a run of rows [off, off + len) with an incoming running
// maximum end m_in; its answer is
//     sum_i max(0, end_i - max(start_i, M_{i-1})),  M_{-1} = m_in,
// over the rows sorted by start (ties in any order), added times `sign` to
// out[slot]. A segment is one problem with m_in = I64_MIN; plan.rs splits
// large problems by start value into buckets, which are problems again.

// Problems of at most 32 rows: one warp each, sorted in registers.
extern "C" __global__ void union_solve_warp(
    const i64* __restrict__ start, const i64* __restrict__ end,
    const Problem* __restrict__ problems, u32 nproblems, u64* __restrict__ out)
{
    u32 w = (u32)(((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    u32 lane = threadIdx.x & 31;
    if (w >= nproblems) return;  // uniform per warp
    Problem p = problems[w];
    i64 s = I64_MAX, e = I64_MIN;  // padding: empty, sorts last
    if (lane < p.len) { s = start[p.off + lane]; e = end[p.off + lane]; }
    for (u32 k = 2; k <= 32; k <<= 1) {
        for (u32 j = k >> 1; j > 0; j >>= 1) {
            i64 os = __shfl_xor_sync(FULL, s, j);
            i64 oe = __shfl_xor_sync(FULL, e, j);
            bool up = (lane & k) == 0;
            bool lower = (lane & j) == 0;
            bool take = (lower == up) ? (os < s) : (os > s);
            if (take) { s = os; e = oe; }
        }
    }
    i64 m = e;
    for (u32 d = 1; d < 32; d <<= 1) {
        i64 o = __shfl_up_sync(FULL, m, d);
        if (lane >= d) m = imax(m, o);
    }
    i64 before = __shfl_up_sync(FULL, m, 1);
    before = lane == 0 ? p.m_in : imax(before, p.m_in);
    u64 g = warp_sum(gain(s, e, before));
    if (lane == 0 && g != 0) atomicAdd(&out[p.slot], p.sign < 0 ? 0ull - g : g);
}

// Problems of 33..SMALL rows: one block each, bitonic sort in shared memory.
// flags & 1: every start equals start[off] (any length): no sort needed.
extern "C" __global__ void __launch_bounds__(BT) union_solve_block(
    const i64* __restrict__ start, const i64* __restrict__ end,
    const Problem* __restrict__ problems, u32 nproblems, u64* __restrict__ out)
{
    __shared__ i64 ss[SMALL];
    __shared__ i64 se[SMALL];
    __shared__ i64 red[BT / 32];
    __shared__ u64 redu[BT / 32];
    if (blockIdx.x >= nproblems) return;
    Problem p = problems[blockIdx.x];
    u32 tid = threadIdx.x;
    u64 g = 0;
    if (p.flags & 1u) {
        i64 m = I64_MIN;
        for (u64 i = tid; i < p.len; i += BT) m = imax(m, end[p.off + i]);
        m = block_max(m, red);
        if (tid == 0) g = gain(start[p.off], m, p.m_in);
    } else {
        u32 n = 1;
        while (n < p.len) n <<= 1;
        for (u32 i = tid; i < n; i += BT) {
            if (i < p.len) { ss[i] = start[p.off + i]; se[i] = end[p.off + i]; }
            else { ss[i] = I64_MAX; se[i] = I64_MIN; }
        }
        __syncthreads();
        for (u32 k = 2; k <= n; k <<= 1) {
            for (u32 j = k >> 1; j > 0; j >>= 1) {
                for (u32 i = tid; i < n; i += BT) {
                    u32 ixj = i ^ j;
                    if (ixj > i) {
                        i64 a = ss[i], b = ss[ixj];
                        bool up = (i & k) == 0;
                        if (up ? a > b : a < b) {
                            ss[i] = b; ss[ixj] = a;
                            i64 t = se[i]; se[i] = se[ixj]; se[ixj] = t;
                        }
                    }
                }
                __syncthreads();
            }
        }
        // Thread tid owns the sorted run [lo, hi); exclusive max-scan of the
        // runs' largest ends gives each run its incoming M.
        u32 per = (n + BT - 1) / BT;
        u32 lo = tid * per < n ? tid * per : n;
        u32 hi = lo + per < n ? lo + per : n;
        i64 lm = I64_MIN;
        for (u32 i = lo; i < hi; i++) lm = imax(lm, se[i]);
        u32 lane = tid & 31, warp = tid >> 5;
        i64 incl = lm;
        for (u32 d = 1; d < 32; d <<= 1) {
            i64 o = __shfl_up_sync(FULL, incl, d);
            if (lane >= d) incl = imax(incl, o);
        }
        if (lane == 31) red[warp] = incl;
        __syncthreads();
        i64 m = p.m_in;
        for (u32 w2 = 0; w2 < warp; w2++) m = imax(m, red[w2]);
        i64 excl = __shfl_up_sync(FULL, incl, 1);
        if (lane > 0) m = imax(m, excl);
        for (u32 i = lo; i < hi; i++) {
            g += gain(ss[i], se[i], m);
            m = imax(m, se[i]);
        }
        g = block_sum(g, redu);
    }
    if (tid == 0 && g != 0) atomicAdd(&out[p.slot], p.sign < 0 ? 0ull - g : g);
}

// Min and max start of each large problem over its tiles (lo/hi start at
// I64_MAX / I64_MIN).
extern "C" __global__ void __launch_bounds__(BT) union_range(
    const i64* __restrict__ start, const Tile* __restrict__ tiles, u32 ntiles,
    i64* __restrict__ lo, i64* __restrict__ hi)
{
    __shared__ i64 red[BT / 32];
    if (blockIdx.x >= ntiles) return;
    Tile t = tiles[blockIdx.x];
    i64 mn = I64_MAX, mx = I64_MIN;
    for (u64 i = t.lo + threadIdx.x; i < t.hi; i += BT) {
        i64 s = start[i];
        mn = imin(mn, s); mx = imax(mx, s);
    }
    mn = block_min(mn, red);
    mx = block_max(mx, red);
    if (threadIdx.x == 0) {
        atomicMin(&lo[t.problem], mn);
        atomicMax(&hi[t.problem], mx);
    }
}

__device__ __forceinline__ u32 bucket_of(i64 s, const Split& sp) {
    return sp.base + (u32)(((u64)s - (u64)sp.lo) / sp.width);
}

// Rows and largest end per start-value bucket (count zeroed, maxend at I64_MIN).
extern "C" __global__ void __launch_bounds__(BT) union_bucket_stats(
    const i64* __restrict__ start, const i64* __restrict__ end,
    const Tile* __restrict__ tiles, u32 ntiles, const Split* __restrict__ splits,
    u32* __restrict__ count, i64* __restrict__ maxend)
{
    if (blockIdx.x >= ntiles) return;
    Tile t = tiles[blockIdx.x];
    Split sp = splits[t.problem];
    for (u64 i = t.lo + threadIdx.x; i < t.hi; i += BT) {
        u32 b = bucket_of(start[i], sp);
        atomicAdd(&count[b], 1u);
        atomicMax(&maxend[b], end[i]);
    }
}

// Moves each row to its bucket's next free place (order inside a bucket does
// not matter: the solve kernels sort it).
extern "C" __global__ void __launch_bounds__(BT) union_scatter(
    const i64* __restrict__ start, const i64* __restrict__ end,
    const Tile* __restrict__ tiles, u32 ntiles, const Split* __restrict__ splits,
    u64* __restrict__ cursor, i64* __restrict__ dst_start, i64* __restrict__ dst_end)
{
    if (blockIdx.x >= ntiles) return;
    Tile t = tiles[blockIdx.x];
    Split sp = splits[t.problem];
    for (u64 i = t.lo + threadIdx.x; i < t.hi; i += BT) {
        i64 s = start[i];
        u64 pos = atomicAdd(&cursor[bucket_of(s, sp)], 1ull);
        dst_start[pos] = s;
        dst_end[pos] = end[i];
    }
}

// Intersection as unions: builds, per segment, A's rows then B's rows at
// base + a_off[s] + b_off[s]. A rows are [0, na) and B rows [na, na + nb) of
// the same buffers.
extern "C" __global__ void interleave_kernel(
    i64* __restrict__ start, i64* __restrict__ end, u64 na, u64 nb,
    const u64* __restrict__ a_off, const u64* __restrict__ b_off, u32 nseg, u64 base)
{
    for (u64 r = (u64)blockIdx.x * blockDim.x + threadIdx.x; r < na + nb; r += (u64)gridDim.x * blockDim.x) {
        u64 dst;
        if (r < na) {
            u32 s = seg_of(a_off, nseg, r);
            dst = base + b_off[s] + r;
        } else {
            u64 j = r - na;
            u32 s = seg_of(b_off, nseg, j);
            dst = base + a_off[s + 1] + j;
        }
        start[dst] = start[r];
        end[dst] = end[r];
    }
}
