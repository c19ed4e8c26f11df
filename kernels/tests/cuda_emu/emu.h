// A tiny CPU stand-in for the CUDA features kernels.cu uses, so CI (no GPU)
// can *run* the kernels: one std::thread per CUDA thread, blocks one after
// another (so `static` locals behave as shared memory), std::barrier for
// __syncthreads and for the warp exchanges behind the shuffles, and GCC
// atomics. It checks kernel logic (sorting, scans, segment walks, bucket
// arithmetic); it says nothing about the real memory model or speed.
#pragma once
#include <array>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(x)
#define __shared__ static

struct EmuBlock {
    explicit EmuBlock(unsigned threads) : block((std::ptrdiff_t)threads), xchg((threads + 31) / 32) {
        for (unsigned w = 0; w < (threads + 31) / 32; w++) {
            unsigned n = threads - 32 * w < 32 ? threads - 32 * w : 32;
            warps.push_back(std::make_unique<std::barrier<>>((std::ptrdiff_t)n));
        }
    }
    std::barrier<> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<std::array<uint64_t, 32>> xchg;
};
inline thread_local EmuBlock* emu_block = nullptr;

inline void __syncthreads() { emu_block->block.arrive_and_wait(); }

template <class T> T emu_exchange(T v, unsigned src) {
    static_assert(sizeof(T) == 8, "the kernels shuffle 64-bit values only");
    unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    emu_block->xchg[w][l] = bits;
    emu_block->warps[w]->arrive_and_wait();
    uint64_t r = emu_block->xchg[w][src];
    emu_block->warps[w]->arrive_and_wait();
    T out;
    std::memcpy(&out, &r, 8);
    return out;
}
template <class T> T __shfl_xor_sync(unsigned, T v, int mask) { return emu_exchange(v, (threadIdx.x % 32) ^ (unsigned)mask); }
template <class T> T __shfl_up_sync(unsigned, T v, unsigned d) {
    unsigned l = threadIdx.x % 32;
    return emu_exchange(v, l >= d ? l - d : l);
}

inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline long long atomicMin(long long* p, long long v) {
    long long old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
inline long long atomicMax(long long* p, long long v) {
    long long old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}

// Runs `kernel` (a lambda calling the extern "C" kernel) on grid x block:
// `block` threads run the blocks one after another (a gate barrier between
// blocks keeps the `static` shared memory to one block at a time).
template <class F> void emu_launch(unsigned grid, unsigned block, F kernel) {
    blockDim = dim3{block, 1, 1};
    gridDim = dim3{grid, 1, 1};
    std::vector<std::unique_ptr<EmuBlock>> blocks;
    for (unsigned b = 0; b < grid; b++) blocks.push_back(std::make_unique<EmuBlock>(block));
    std::barrier<> gate((std::ptrdiff_t)block);
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; t++) {
        threads.emplace_back([&, t] {
            threadIdx = dim3{t, 0, 0};
            for (unsigned b = 0; b < grid; b++) {
                blockIdx = dim3{b, 0, 0};
                emu_block = blocks[b].get();
                kernel();
                // A thread that returned no longer takes part in this block's barriers.
                emu_block->warps[t / 32]->arrive_and_drop();
                emu_block->block.arrive_and_drop();
                gate.arrive_and_wait();
            }
        });
    }
    for (auto& th : threads) th.join();
}
