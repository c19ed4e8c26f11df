// Runs every kernel of src/gpu/kernels.cu on the CPU stand-in (emu.h) with
// random inputs and checks it against a plain reference, kernel by kernel:
// the contracts that gpu/plan.rs and gpu/mod.rs rely on.
//
//   check_kernels BUCKET_TABLE SEED
//
// BUCKET_TABLE: lines "sub_bits value bucket" written by LogBuckets::bucket
// (tests/cuda_emulated.rs), so the device bucketing is checked against Rust.
#include "emu.h"
#include "../../src/gpu/kernels.cu"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>

static std::mt19937_64 rng;
static int failures = 0;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (!(cond)) {                                          \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            std::fprintf(stderr, __VA_ARGS__);                  \
            std::fprintf(stderr, "\n");                         \
            if (++failures > 20) std::exit(1);                  \
        }                                                       \
    } while (0)

static i64 rnd(i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); }
static unsigned blocks(u64 n, u64 per) { return (unsigned)std::max<u64>(1, (n + per - 1) / per); }

// Offsets (u64) of segments with sizes drawn by `shape`, including empty ones.
static std::vector<u64> make_offsets(u64 rows, int shape) {
    std::vector<u64> o{0};
    u64 left = rows;
    while (left > 0) {
        if (rnd(0, 6) == 0) o.push_back(o.back());
        u64 n = shape == 0 ? rnd(1, 40) : shape == 1 ? rnd(1, 3000) : left;
        n = std::min(n, left);
        o.push_back(o.back() + n);
        left -= n;
    }
    if (rnd(0, 1)) o.push_back(o.back());
    return o;
}

static i64 any_value() {
    switch (rnd(0, 5)) {
        case 0: return I64_MAX;
        case 1: return I64_MIN;
        case 2: return 0;
        case 3: return rnd(-5, 100);
        default: return (i64)rng();
    }
}

static void check_buckets(const char* path) {
    std::ifstream f(path);
    u32 sub; i64 v; u64 want; int n = 0;
    while (f >> sub >> v >> want) {
        u32 got = log_bucket(v, sub);
        CHECK(got == want, "log_bucket(%lld, %u) = %u, LogBuckets::bucket says %llu", v, sub, got, want);
        n++;
    }
    CHECK(n > 100, "bucket table %s has only %d rows", path, n);
    std::printf("ok log_bucket equals LogBuckets::bucket on %d values\n", n);
}

static void check_stats() {
    for (int shape = 0; shape < 3; shape++) {
        u64 rows = rnd(1, 7000);
        auto off = make_offsets(rows, shape);
        u32 nseg = off.size() - 1;
        std::vector<i64> v(rows);
        for (auto& x : v) x = any_value();
        std::vector<u64> sum(nseg, 0);
        std::vector<i64> mn(nseg, I64_MAX), mx(nseg, I64_MIN);
        emu_launch(blocks(rows, TILE), BT, [&] { stats_kernel(v.data(), rows, off.data(), nseg, sum.data(), mn.data(), mx.data()); });
        for (u32 s = 0; s < nseg; s++) {
            u64 rs = 0; i64 rmn = I64_MAX, rmx = I64_MIN;
            for (u64 i = off[s]; i < off[s + 1]; i++) { rs += (u64)v[i]; rmn = std::min(rmn, v[i]); rmx = std::max(rmx, v[i]); }
            CHECK(sum[s] == rs && mn[s] == rmn && mx[s] == rmx, "stats shape %d segment %u", shape, s);
        }
    }
    std::printf("ok stats_kernel\n");
}

static void check_histogram() {
    for (u32 sub : {0u, 4u, 8u}) {
        for (int shape = 0; shape < 3; shape++) {
            u64 rows = rnd(1, 5000);
            auto off = make_offsets(rows, shape);
            u32 nseg = off.size() - 1, nb = (64 - sub) << sub;
            std::vector<i64> v(rows);
            for (auto& x : v) x = rnd(0, 3) ? rnd(-10, 1 << 20) : any_value();
            std::vector<u64> counts((u64)nseg * nb, 0), want((u64)nseg * nb, 0);
            emu_launch(blocks(rows, TILE), BT, [&] { histogram_kernel(v.data(), rows, off.data(), nseg, sub, nb, counts.data()); });
            for (u32 s = 0; s < nseg; s++)
                for (u64 i = off[s]; i < off[s + 1]; i++) want[(u64)s * nb + log_bucket(v[i], sub)]++;
            CHECK(counts == want, "histogram sub_bits %u shape %d", sub, shape);
        }
    }
    std::printf("ok histogram_kernel (shared-memory and global paths)\n");
}

static void check_groups() {
    u64 rows = rnd(1, 3000);
    u32 groups = 10, g0 = 3, ng = 5;
    std::vector<u32> g(rows);
    std::vector<i64> start(rows), dur(rows);
    for (u64 i = 0; i < rows; i++) { g[i] = rnd(0, groups - 1); start[i] = rnd(-1000000, 1000000); dur[i] = rnd(0, 500000); }
    if (rnd(0, 1)) start[0] = I64_MIN;
    std::vector<i64> mx(ng, I64_MIN);
    std::vector<u32> present(ng, 0);
    emu_launch(blocks(rows, BT), BT, [&] { group_max_kernel(g.data(), start.data(), rows, g0, ng, mx.data(), present.data()); });
    std::vector<i64> out(rows, -1);
    emu_launch(blocks(rows, BT), BT, [&] { sync_stall_kernel(g.data(), start.data(), dur.data(), rows, g0, ng, mx.data(), out.data()); });
    for (u32 k = 0; k < ng; k++) {
        bool any = false; i64 m = I64_MIN;
        for (u64 i = 0; i < rows; i++) if (g[i] == g0 + k) { any = true; m = std::max(m, start[i]); }
        CHECK(any == (present[k] != 0) && (!any || m == mx[k]), "group %u", g0 + k);
    }
    for (u64 i = 0; i < rows; i++) {
        if (g[i] < g0 || g[i] >= g0 + ng) { CHECK(out[i] == -1, "row %llu outside the group range was written", (unsigned long long)i); continue; }
        i64 wait = (i64)((u64)mx[g[i] - g0] - (u64)start[i]);
        CHECK(out[i] == std::max<i64>(0, std::min(wait, dur[i])), "sync stall row %llu", (unsigned long long)i);
    }
    std::printf("ok group_max_kernel, sync_stall_kernel\n");
}

// Reference answer of one union problem.
static u64 solve_ref(const std::vector<i64>& s, const std::vector<i64>& e, const Problem& p) {
    std::vector<std::pair<i64, i64>> r;
    for (u64 i = p.off; i < p.off + p.len; i++) r.push_back({s[i], e[i]});
    std::sort(r.begin(), r.end(), [](auto a, auto b) { return a.first < b.first; });
    i64 m = p.m_in; u64 g = 0;
    for (auto [a, b] : r) { i64 x = std::max(a, m); if (b > x) g += (u64)b - (u64)x; m = std::max(m, b); }
    return p.sign < 0 ? 0 - g : g;
}

static void check_solve() {
    for (int kind = 0; kind < 3; kind++) {  // 0: warp sizes, 1: block sizes, 2: constant starts
        std::vector<Problem> ps;
        std::vector<i64> s, e;
        int n = kind == 1 ? 40 : 64;
        for (int k = 0; k < n; k++) {
            Problem p{};
            p.off = s.size();
            p.len = kind == 0 ? rnd(1, 32) : kind == 1 ? (rnd(0, 3) ? rnd(33, 300) : rnd(33, SMALL)) : rnd(1, 5000);
            p.m_in = rnd(0, 2) ? I64_MIN : rnd(0, 100000);
            p.slot = rnd(0, 3);
            p.sign = rnd(0, 1) ? 1 : -1;
            p.flags = kind == 2 ? 1 : 0;
            i64 c = rnd(0, 100000);
            for (u32 i = 0; i < p.len; i++) {
                i64 a = kind == 2 ? c : rnd(0, 200000), l = rnd(-50, 20000);
                if (kind != 2 && rnd(0, 9) == 0 && !s.empty()) a = s.back();  // equal starts
                s.push_back(a); e.push_back(a + l);
            }
            ps.push_back(p);
        }
        std::vector<u64> out(4, 0), want(4, 0);
        for (auto& p : ps) want[p.slot] += solve_ref(s, e, p);
        if (kind == 0) emu_launch(blocks(ps.size(), BT / 32), BT, [&] { union_solve_warp(s.data(), e.data(), ps.data(), ps.size(), out.data()); });
        else emu_launch(ps.size(), BT, [&] { union_solve_block(s.data(), e.data(), ps.data(), ps.size(), out.data()); });
        CHECK(out == want, "union solve kind %d: slots %llu %llu %llu %llu, want %llu %llu %llu %llu", kind,
              (unsigned long long)out[0], (unsigned long long)out[1], (unsigned long long)out[2], (unsigned long long)out[3],
              (unsigned long long)want[0], (unsigned long long)want[1], (unsigned long long)want[2], (unsigned long long)want[3]);
    }
    std::printf("ok union_solve_warp, union_solve_block (sorted and constant-start)\n");
}

static void check_split() {
    // Two large problems in one buffer, bucketed as plan::split_level does.
    std::vector<Problem> ps;
    std::vector<i64> s, e;
    for (int k = 0; k < 2; k++) {
        Problem p{};
        p.off = s.size();
        p.len = rnd(3000, 9000);
        i64 lo = k == 0 ? rnd(-1000000, 0) : I64_MIN / 2, span = k == 0 ? 5000000 : I64_MAX;
        for (u32 i = 0; i < p.len; i++) { i64 a = lo + rnd(0, span); s.push_back(a); e.push_back(a + rnd(1, 9000)); }
        ps.push_back(p);
    }
    std::vector<Tile> tiles;
    for (u32 k = 0; k < ps.size(); k++)
        for (u64 lo = ps[k].off; lo < ps[k].off + ps[k].len; lo += 4096)
            tiles.push_back(Tile{lo, std::min<u64>(lo + 4096, ps[k].off + ps[k].len), k, 0});
    std::vector<i64> lo(ps.size(), I64_MAX), hi(ps.size(), I64_MIN);
    emu_launch(tiles.size(), BT, [&] { union_range(s.data(), tiles.data(), tiles.size(), lo.data(), hi.data()); });
    std::vector<Split> sp;
    std::vector<u64> nbs;
    u32 base = 0;
    for (u32 k = 0; k < ps.size(); k++) {
        i64 rlo = I64_MAX, rhi = I64_MIN;
        for (u64 i = ps[k].off; i < ps[k].off + ps[k].len; i++) { rlo = std::min(rlo, s[i]); rhi = std::max(rhi, s[i]); }
        CHECK(lo[k] == rlo && hi[k] == rhi, "union_range problem %u", k);
        unsigned __int128 range = (unsigned __int128)((__int128)rhi - (__int128)rlo);
        unsigned __int128 want = std::max<unsigned __int128>(2, (ps[k].len + 511) / 512);
        unsigned __int128 width = (range + 1 + want - 1) / want;
        u64 nb = (u64)(range / width + 1);
        sp.push_back(Split{rlo, (u64)width, base, 0});
        nbs.push_back(nb);
        base += nb;
    }
    std::vector<u32> count(base, 0);
    std::vector<i64> maxend(base, I64_MIN);
    emu_launch(tiles.size(), BT, [&] { union_bucket_stats(s.data(), e.data(), tiles.data(), tiles.size(), sp.data(), count.data(), maxend.data()); });
    std::vector<u32> rc(base, 0);
    std::vector<i64> rm(base, I64_MIN);
    for (u32 k = 0; k < ps.size(); k++)
        for (u64 i = ps[k].off; i < ps[k].off + ps[k].len; i++) {
            u64 b = sp[k].base + ((u64)s[i] - (u64)sp[k].lo) / sp[k].width;
            CHECK(b < sp[k].base + nbs[k], "bucket %llu out of range", (unsigned long long)b);
            rc[b]++; rm[b] = std::max(rm[b], e[i]);
        }
    CHECK(count == rc && maxend == rm, "union_bucket_stats");
    std::vector<u64> cursor(base), first(base);
    for (u32 k = 0; k < ps.size(); k++) {
        u64 pos = ps[k].off;
        for (u64 b = sp[k].base; b < sp[k].base + nbs[k]; b++) { cursor[b] = first[b] = pos; pos += count[b]; }
    }
    std::vector<i64> ds(s.size(), 77), de(s.size(), -77);
    emu_launch(tiles.size(), BT, [&] { union_scatter(s.data(), e.data(), tiles.data(), tiles.size(), sp.data(), cursor.data(), ds.data(), de.data()); });
    for (u64 b = 0; b < base; b++) {
        CHECK(cursor[b] == first[b] + count[b], "scatter cursor of bucket %llu", (unsigned long long)b);
        std::multiset<std::pair<i64, i64>> got, want;
        for (u64 i = first[b]; i < first[b] + count[b]; i++) got.insert({ds[i], de[i]});
        u32 k = 0;
        while (k + 1 < ps.size() && b >= sp[k + 1].base) k++;
        for (u64 i = ps[k].off; i < ps[k].off + ps[k].len; i++)
            if (sp[k].base + ((u64)s[i] - (u64)sp[k].lo) / sp[k].width == b) want.insert({s[i], e[i]});
        CHECK(got == want, "scatter contents of bucket %llu", (unsigned long long)b);
    }
    std::printf("ok union_range, union_bucket_stats, union_scatter (%u buckets)\n", base);
}

static void check_interleave() {
    auto a = make_offsets(rnd(1, 2000), 1);
    std::vector<u64> b{0};
    for (size_t k = 1; k < a.size(); k++) b.push_back(b.back() + (rnd(0, 4) ? rnd(0, 50) : 0));
    u64 na = a.back(), nb = b.back();
    u32 nseg = a.size() - 1;
    std::vector<i64> s(2 * (na + nb), 0), e(2 * (na + nb), 0);
    for (u64 i = 0; i < na + nb; i++) { s[i] = rnd(1, 1 << 30); e[i] = s[i] + 1; }
    auto s0 = s, e0 = e;
    emu_launch(blocks(na + nb, BT), BT, [&] { interleave_kernel(s.data(), e.data(), na, nb, a.data(), b.data(), nseg, na + nb); });
    u64 at = na + nb;
    for (u32 k = 0; k < nseg; k++) {
        for (u64 i = a[k]; i < a[k + 1]; i++, at++) CHECK(s[at] == s0[i] && e[at] == e0[i], "interleave A row %llu", (unsigned long long)i);
        for (u64 j = b[k]; j < b[k + 1]; j++, at++) CHECK(s[at] == s0[na + j] && e[at] == e0[na + j], "interleave B row %llu", (unsigned long long)j);
    }
    std::printf("ok interleave_kernel\n");
}

int main(int argc, char** argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: check_kernels BUCKET_TABLE SEED\n"); return 2; }
    rng.seed(std::strtoull(argv[2], nullptr, 10));
    check_buckets(argv[1]);
    check_stats();
    check_histogram();
    check_groups();
    check_solve();
    check_split();
    check_interleave();
    if (failures) { std::fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
    std::printf("all kernels match their references\n");
    return 0;
}
