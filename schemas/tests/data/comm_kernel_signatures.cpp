// The communication kernels of schemas/tests/comm_kernels.rs, declared as host functions with the
// signatures of their sources, so that a host C++ compiler gives their Itanium names (nvcc and
// hipcc name device functions the same way): g++ -std=c++17 -c comm_kernel_signatures.cpp && nm *.o | c++filt

// Host declarations with the kernels' real signatures (from the libraries' sources), to get their Itanium names.
#include <cstdint>
#include <cstddef>
struct int4 { int x, y, z, w; };
struct __half { unsigned short x; };
struct __nv_bfloat16 { unsigned short x; };
typedef __nv_bfloat16 nv_bfloat16;
typedef __half half;
// NCCL (src/include/device.h, src/device/common.h, generate.py)
template <size_t capacity> struct alignas(16) ncclDevKernelArgsStorage { char storage[capacity]; };
typedef ncclDevKernelArgsStorage<(4 << 10)> ncclDevKernelArgs4K;
void ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgs4K const args4K) {}
void ncclDevKernel_Generic(ncclDevKernelArgs4K const args4K) {}
void ncclDevKernel_SendRecv(ncclDevKernelArgs4K const args4K) {}
struct ncclDevComm; struct ncclWork; struct ncclWorkElem;
void ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm* comm, unsigned long channelMask, ncclWork* workHead) {}
void ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm* comm, unsigned long channelMask, ncclWork* workHead) {}
struct ncclSymDevArgs; template <size_t capacity> struct alignas(16) ncclSymkDevWorkArgsStorage { char s[capacity]; };
typedef ncclSymkDevWorkArgsStorage<(4 << 10)> ncclSymkDevWorkArgs4K;
void ncclSymkDevKernel_AllReduce_AGxLLMC_R_sum_bf16(ncclSymkDevWorkArgs4K const args4K) {}
void ncclSymDevKernel_AllGather_LL(ncclSymDevArgs const* args) {}
// MSCCL (microsoft/msccl src/include/msccl/msccl_kernel.h; RCCL adds fullOps)
struct mscclAlgo; struct mscclWork;
void mscclKernel_Sum_float_LL(ncclDevComm* comm, mscclAlgo* algo, mscclWork* work) {}
void mscclKernel_Sum_half_Simple_false(ncclDevComm* comm, mscclAlgo* algo, mscclWork* work) {}
// MSCCL++ (src/core/include/execution_kernel.hpp, src/ext/collectives/)
namespace mscclpp {
template <typename T> struct DeviceHandle {};
struct MemoryChannel {}; struct BaseMemoryChannel {}; struct PortChannel {}; struct DeviceExecutionPlan {};
enum ReduceOp { SUM = 0 };
template <typename T>
void executionKernel(int rank, T* input, T* output, T* scratch, uint32_t scratchOffset, size_t scratchChunkSize,
                     DeviceExecutionPlan* plan, uint32_t planSize, uint32_t flag) {}
template void executionKernel<__half>(int, __half*, __half*, __half*, uint32_t, size_t, DeviceExecutionPlan*, uint32_t, uint32_t);
namespace collective {
template <ReduceOp OpType, typename T, typename AccumT>
void allreduceFullmesh(T* buff, T* scratch, T* resultBuff, DeviceHandle<MemoryChannel>* memoryChannels,
                       DeviceHandle<MemoryChannel>* memoryOutChannels, size_t channelOutDataOffset, int rank,
                       int nRanksPerIpcDomain, int worldSize, size_t nelems) {}
template void allreduceFullmesh<SUM, __half, __half>(__half*, __half*, __half*, DeviceHandle<MemoryChannel>*, DeviceHandle<MemoryChannel>*, size_t, int, int, int, size_t);
template <bool IsOutOfPlace>
void allgatherFullmesh(void* buff, void* scratch, void* resultBuff, DeviceHandle<MemoryChannel>* memoryChannels,
                       int rank, int nRanksPerIpcDomain, int worldSize, size_t nelems) {}
template void allgatherFullmesh<true>(void*, void*, void*, DeviceHandle<MemoryChannel>*, int, int, int, size_t);
}
}
// NVSHMEM (src/include/internal/non_abi/nvshmemi_h_to_d_{coll,rma,sync}_defs.cuh)
typedef int32_t nvshmem_team_t;
enum rdxn_ops_t { RDXN_OPS_SUM = 4 };
enum threadgroup_t { NVSHMEMI_THREADGROUP_THREAD = 0, NVSHMEMI_THREADGROUP_WARP = 1, NVSHMEMI_THREADGROUP_BLOCK = 2 };
struct rma_bytesdesc_t { size_t nelems; int elembytes; ptrdiff_t srcstride; ptrdiff_t deststride; };
enum nvshmemi_op_t { NVSHMEMI_OP_PUT = 1 };
template <typename TYPE> void alltoall_on_stream_kernel(nvshmem_team_t team, TYPE* dest, const TYPE* source, size_t nelems, int in_cuda_graph) {}
template void alltoall_on_stream_kernel<float>(nvshmem_team_t, float*, const float*, size_t, int);
template <threadgroup_t SCOPE> void barrier_on_stream_kernel_threadgroup(nvshmem_team_t team, int in_cuda_graph) {}
template void barrier_on_stream_kernel_threadgroup<NVSHMEMI_THREADGROUP_BLOCK>(nvshmem_team_t, int);
template <typename T> void broadcast_on_stream_kernel(nvshmem_team_t team, T* dest, const T* source, size_t nelems, int PE_root, int in_cuda_graph) {}
template void broadcast_on_stream_kernel<float>(nvshmem_team_t, float*, const float*, size_t, int, int);
template <typename TYPE> void fcollect_on_stream_kernel(nvshmem_team_t team, TYPE* dest, const TYPE* source, size_t nelems, int in_cuda_graph) {}
template void fcollect_on_stream_kernel<float>(nvshmem_team_t, float*, const float*, size_t, int);
template <typename TYPE, rdxn_ops_t OP> void rdxn_on_stream_kernel(nvshmem_team_t team, TYPE* dest, const TYPE* source, size_t nreduce, int in_cuda_graph) {}
template void rdxn_on_stream_kernel<float, RDXN_OPS_SUM>(nvshmem_team_t, float*, const float*, size_t, int);
template <typename TYPE, rdxn_ops_t OP> void reducescatter_on_stream_kernel(nvshmem_team_t team, TYPE* dest, const TYPE* source, size_t nreduce, int in_cuda_graph) {}
template void reducescatter_on_stream_kernel<float, RDXN_OPS_SUM>(nvshmem_team_t, float*, const float*, size_t, int);
template <threadgroup_t SCOPE> void sync_on_stream_kernel_threadgroup(nvshmem_team_t team, int in_cuda_graph) {}
template void sync_on_stream_kernel_threadgroup<NVSHMEMI_THREADGROUP_BLOCK>(nvshmem_team_t, int);
void nvshmemi_proxy_rma_entrypoint(void* rptr, void* lptr, rma_bytesdesc_t bytesdesc, int pe, const nvshmemi_op_t desc) {}
void nvshmemi_proxy_rma_signal_entrypoint_blocking(void* rptr, void* lptr, rma_bytesdesc_t bytesdesc, uint64_t* sig_addr, uint64_t signal, int sig_op, int pe, const nvshmemi_op_t desc) {}
static void nvshmemi_signal_wait_until_on_stream_kernel(volatile uint64_t* sig_addr, int cmp, uint64_t cmp_value) {}
static void nvshmemi_int_wait_until_on_stream_kernel(volatile int* ivar, int cmp, int cmp_value) {}
static void nvshmemi_signal_op_kernel(uint64_t* sig_addr, uint64_t signal, int sig_op, int pe) {}
// DeepEP v1 (csrc/kernels/intranode.cu, internode.cu, internode_ll.cu at 79bbb54), legacy and elastic (HEAD)
typedef int64_t topk_idx_t;
namespace deep_ep {
namespace intranode {
void notify_dispatch(const int* num_tokens_per_rank, int* moe_recv_counter_mapped, const int* num_tokens_per_expert,
                     int* moe_recv_expert_counter_mapped, int num_experts, int num_tokens, int num_channels,
                     const bool* is_token_in_rank, int* channel_prefix_matrix, int* rank_prefix_matrix_copy,
                     int num_memset_int, int expert_alignment, void** buffer_ptrs, int** barrier_signal_ptrs, int rank) {}
template <int kNumRanks>
void cached_notify_dispatch(const int* rank_prefix_matrix, int num_memset_int, void** buffer_ptrs, int** barrier_signal_ptrs, int rank) {}
template void cached_notify_dispatch<8>(const int*, int, void**, int**, int);
template <int kNumRanks, int kNumThreads, int kNumTMABytesPerWarp>
void dispatch(int4* recv_x, float* recv_x_scales, int* recv_src_idx, topk_idx_t* recv_topk_idx, float* recv_topk_weights,
              int* recv_channel_offset, int* send_head, const int4* x, const float* x_scales, const topk_idx_t* topk_idx,
              const float* topk_weights, const bool* is_token_in_rank, const int* channel_prefix_matrix, int num_tokens,
              int num_worst_tokens, int hidden_int4, int num_topk, int num_experts, int num_scales, int scale_token_stride,
              int scale_hidden_stride, void** buffer_ptrs, int rank, int num_max_send_tokens, int num_recv_buffer_tokens) {}
template void dispatch<8, 768, 8192>(int4*, float*, int*, topk_idx_t*, float*, int*, int*, const int4*, const float*, const topk_idx_t*, const float*, const bool*, const int*, int, int, int, int, int, int, int, int, void**, int, int, int);
template <int kNumRanks>
void cached_notify_combine(void** buffer_ptrs, int* send_head, int num_channels, int num_recv_tokens, int num_memset_int, int** barrier_signal_ptrs, int rank) {}
template void cached_notify_combine<8>(void**, int*, int, int, int, int**, int);
template <typename dtype_t, int kNumRanks, int kNumThreads, int kNumTMABytesPerWarp>
void combine(dtype_t* recv_x, float* recv_topk_weights, const dtype_t* x, const float* topk_weights, const dtype_t* bias_0,
             const dtype_t* bias_1, const int* src_idx, const int* rank_prefix_matrix, const int* channel_prefix_matrix,
             int* send_head, int num_tokens, int num_recv_tokens, int hidden, int num_topk, void** buffer_ptrs, int rank,
             int num_max_send_tokens, int num_recv_buffer_tokens) {}
template void combine<nv_bfloat16, 8, 768, 4096>(nv_bfloat16*, float*, const nv_bfloat16*, const float*, const nv_bfloat16*, const nv_bfloat16*, const int*, const int*, const int*, int*, int, int, int, int, void**, int, int, int);
}
namespace internode {
template <bool kLowLatencyMode, int kNumRDMARanks>
void notify_dispatch(const int* num_tokens_per_rank, int* moe_recv_counter_mapped, int num_ranks, const int* num_tokens_per_rdma_rank,
                     int* moe_recv_rdma_counter_mapped, const int* num_tokens_per_expert, int* moe_recv_expert_counter_mapped,
                     int num_experts, const bool* is_token_in_rank, int num_tokens, int num_channels, int expert_alignment,
                     int* rdma_channel_prefix_matrix, int* recv_rdma_rank_prefix_sum, int* gbl_channel_prefix_matrix,
                     int* recv_gbl_rank_prefix_sum, void* rdma_buffer_ptr, int num_max_rdma_chunked_recv_tokens,
                     void** buffer_ptrs, int num_max_nvl_chunked_recv_tokens, int** barrier_signal_ptrs, int rank) {}
template void notify_dispatch<false, 2>(const int*, int*, int, const int*, int*, const int*, int*, int, const bool*, int, int, int, int*, int*, int*, int*, void*, int, void**, int, int**, int);
template <bool kLowLatencyMode, int kNumRDMARanks, bool kCachedMode, int kNumTMABytesPerWarp, int kNumDispatchRDMASenderWarps, int kNumTopkRDMARanks>
void dispatch(int4* recv_x, float* recv_x_scales, topk_idx_t* recv_topk_idx, float* recv_topk_weights, void* recv_src_meta,
              const int4* x, const float* x_scales, const topk_idx_t* topk_idx, const float* topk_weights, int* send_rdma_head,
              int* send_nvl_head, int* recv_rdma_channel_prefix_matrix, int* recv_gbl_channel_prefix_matrix,
              const int* rdma_channel_prefix_matrix, const int* recv_rdma_rank_prefix_sum, const int* gbl_channel_prefix_matrix,
              const int* recv_gbl_rank_prefix_sum, const bool* is_token_in_rank, int num_tokens, int hidden_int4, int num_scales,
              int num_topk, int num_experts, int scale_token_stride, int scale_hidden_stride, void* rdma_buffer_ptr,
              int num_max_rdma_chunked_send_tokens, int num_max_rdma_chunked_recv_tokens, void** buffer_ptrs,
              int num_max_nvl_chunked_send_tokens, int num_max_nvl_chunked_recv_tokens, int rank, int num_ranks) {}
template void dispatch<false, 2, false, 16384, 7, 2>(int4*, float*, topk_idx_t*, float*, void*, const int4*, const float*, const topk_idx_t*, const float*, int*, int*, int*, int*, const int*, const int*, const int*, const int*, const bool*, int, int, int, int, int, int, int, void*, int, int, void**, int, int, int, int);
template <bool kLowLatencyMode>
void cached_notify(const int rdma_clean_offset, const int rdma_num_int_clean, const int nvl_clean_offset, const int nvl_num_int_clean,
                   int* combined_rdma_head, int num_combined_tokens, int num_channels, const int* rdma_channel_prefix_matrix,
                   const int* rdma_rank_prefix_sum, int* combined_nvl_head, void* rdma_buffer_ptr, void** buffer_ptrs,
                   int** barrier_signal_ptrs, int rank, int num_ranks, bool is_cached_dispatch) {}
template void cached_notify<false>(const int, const int, const int, const int, int*, int, int, const int*, const int*, int*, void*, void**, int**, int, int, bool);
template <bool kLowLatencyMode, int kNumRDMARanks, typename dtype_t, int kNumCombineForwarderWarps, int kNumTMABytesPerWarp>
void combine(int4* combined_x, float* combined_topk_weights, const bool* is_combined_token_in_rank, const int4* x,
             const float* topk_weights, const int4* bias_0, const int4* bias_1, const int* combined_rdma_head,
             const int* combined_nvl_head, const void* src_meta, const int* rdma_channel_prefix_matrix,
             const int* rdma_rank_prefix_sum, const int* gbl_channel_prefix_matrix, int num_tokens, int num_combined_tokens,
             int hidden, int num_topk, void* rdma_buffer_ptr, int num_max_rdma_chunked_send_tokens,
             int num_max_rdma_chunked_recv_tokens, void** buffer_ptrs, int num_max_nvl_chunked_send_tokens,
             int num_max_nvl_chunked_recv_tokens, int rank, int num_ranks) {}
template void combine<false, 2, nv_bfloat16, 4, 16384>(int4*, float*, const bool*, const int4*, const float*, const int4*, const int4*, const int*, const int*, const void*, const int*, const int*, const int*, int, int, int, int, void*, int, int, void**, int, int, int, int);
}
namespace internode_ll {
template <int kNumThreads>
void clean_low_latency_buffer(int* clean_0, int num_clean_int_0, int* clean_1, int num_clean_int_1, int rank, int num_ranks, int* mask_buffer_ptr, int* sync_buffer_ptr) {}
template void clean_low_latency_buffer<256>(int*, int, int*, int, int, int, int*, int*);
template <bool kUseFP8, bool kUseUE8M0, int kHidden>
void dispatch(void* packed_recv_x, void* packed_recv_x_scales, int* packed_recv_src_info, int64_t* packed_recv_layout_range,
              int* packed_recv_count, int* mask_buffer_ptr, int* cumulative_local_expert_recv_stats,
              int64_t* dispatch_wait_recv_cost_stats, void* rdma_recv_x, int* rdma_recv_count, void* rdma_x, const void* x,
              const topk_idx_t* topk_idx, int* atomic_counter_per_expert, int* atomic_finish_counter_per_expert,
              int* next_clean, int num_next_clean_int, int num_tokens, int num_max_dispatch_tokens_per_rank, int num_topk,
              int num_experts, int rank, int num_ranks, int num_warp_groups, int num_warps_per_group, bool round_scale, int phases) {}
template void dispatch<true, false, 7168>(void*, void*, int*, int64_t*, int*, int*, int*, int64_t*, void*, int*, void*, const void*, const topk_idx_t*, int*, int*, int*, int, int, int, int, int, int, int, int, int, bool, int);
template <bool kUseLogFMT, int kHidden, int kNumMaxTopk, int kNumMaxUnrolls>
void combine(void* combined_x, void* rdma_recv_x, int* rdma_recv_flag, void* rdma_send_x, const void* x, const topk_idx_t* topk_idx,
             const float* topk_weights, const int* src_info, const int64_t* layout_range, int* mask_buffer_ptr,
             int64_t* combine_wait_recv_cost_stats, int* next_clean, int num_next_clean_int, int* atomic_clean_flag,
             int num_combined_tokens, int hidden, int num_topk, int num_max_dispatch_tokens_per_rank, int num_experts,
             int rank, int num_ranks, int num_warp_groups, int num_warps_per_group, int phases, bool zero_copy) {}
template void combine<false, 7168, 9, 8>(void*, void*, int*, void*, const void*, const topk_idx_t*, const float*, const int*, const int64_t*, int*, int64_t*, int*, int, int*, int, int, int, int, int, int, int, int, int, int, bool);
}
namespace legacy { namespace intranode {
template <int kNumRanks, int kNumThreads, int kNumTMABytesPerWarp>
void dispatch(int4* recv_x, float* recv_x_scales, int* recv_src_idx, topk_idx_t* recv_topk_idx, float* recv_topk_weights,
              int* recv_channel_offset, int* send_head, const int4* x, const float* x_scales, const topk_idx_t* topk_idx,
              const float* topk_weights, const bool* is_token_in_rank, const int* channel_prefix_matrix, int num_tokens,
              int num_worst_tokens, int hidden_int4, int num_topk, int num_experts, int num_scales, int scale_token_stride,
              int scale_hidden_stride, void** buffer_ptrs, int rank, int num_max_send_tokens, int num_recv_buffer_tokens) {}
template void dispatch<8, 768, 8192>(int4*, float*, int*, topk_idx_t*, float*, int*, int*, const int4*, const float*, const topk_idx_t*, const float*, const bool*, const int*, int, int, int, int, int, int, int, int, void**, int, int, int);
} }
namespace elastic {
struct sf_pack_t {};
template <int kNumThreads, int kNumSMs>
void dispatch_impl(void* x, sf_pack_t* sf, topk_idx_t* topk_idx, float* topk_weights, topk_idx_t* copied_topk_idx) {}
template void dispatch_impl<1024, 24>(void*, sf_pack_t*, topk_idx_t*, float*, topk_idx_t*);
template <int kNumThreads, int kNumSMs>
void combine_impl(nv_bfloat16* x, float* topk_weights, int* src_metadata, int* psum_num_recv_tokens_per_scaleup_rank) {}
template void combine_impl<1024, 24>(nv_bfloat16*, float*, int*, int*);
}
}
// PyTorch symmetric memory (torch/csrc/distributed/c10d/symm_mem/CUDASymmetricMemoryOps.cu): anonymous namespace, static
namespace {
template <typename T, int alignment>
static void multimem_all_reduce_kernel(T* input_mc_ptr, size_t numel, uint32_t** signal_pads, size_t rank, size_t world_size) {}
template <typename T, int alignment, int k_world_size>
static void one_shot_all_reduce_kernel(T** input_ptrs, T* output_ptr, T* input_ptr, size_t input_offset, size_t numel, uint32_t** signal_pads, size_t rank, size_t world_size) {}
template <typename T, int alignment, int k_world_size, bool split_last_dim>
static void two_shot_all_reduce_kernel(T** input_ptrs, T* output_ptr, size_t input_offset, size_t numel, uint32_t** signal_pads, size_t rank, size_t world_size) {}
}
void* keep_symm[] = {(void*)&multimem_all_reduce_kernel<float, 16>, (void*)&one_shot_all_reduce_kernel<nv_bfloat16, 16, 8>, (void*)&two_shot_all_reduce_kernel<nv_bfloat16, 16, 8, false>,
  (void*)&nvshmemi_signal_wait_until_on_stream_kernel, (void*)&nvshmemi_int_wait_until_on_stream_kernel, (void*)&nvshmemi_signal_op_kernel};
namespace c10d { namespace intra_node_comm {
struct P2pState;
template <uint32_t kWorldSize>
static void oneShotAllReduceKernel(nv_bfloat16* input, size_t N, size_t N_aligned, P2pState** p2pStates, nv_bfloat16** buffers, size_t rank) {}
void* keep_inc[] = {(void*)&oneShotAllReduceKernel<8>};
} }
// vLLM / SGLang custom all-reduce (csrc/custom_all_reduce.cuh; sgl-kernel/csrc/allreduce/custom_all_reduce.cuh)
namespace vllm {
struct Signal; struct RankData; struct RankSignals { Signal* signals[8]; };
template <typename T, int ngpus>
void cross_device_reduce_1stage(RankData* _dp, RankSignals sg, Signal* self_sg, T* result, int rank, int size) {}
template void cross_device_reduce_1stage<nv_bfloat16, 8>(RankData*, RankSignals, Signal*, nv_bfloat16*, int, int);
template <typename T, int ngpus>
void cross_device_reduce_2stage(RankData* _dp, RankSignals sg, Signal* self_sg, T* result, int rank, int size) {}
template void cross_device_reduce_2stage<half, 4>(RankData*, RankSignals, Signal*, half*, int, int);
}
// AITER custom all-reduce (ROCm/aiter csrc/include/custom_all_reduce.cuh, namespace aiter)
namespace aiter {
struct Signal; struct RankData; struct RankSignals { Signal* signals[8]; };
template <typename T, int ngpus>
void cross_device_reduce_2stage(RankData* _dp, RankSignals sg, Signal* self_sg, T* result, int rank, int size) {}
template void cross_device_reduce_2stage<nv_bfloat16, 8>(RankData*, RankSignals, Signal*, nv_bfloat16*, int, int);
}
// QuickReduce (vLLM/SGLang ROCm, csrc/quickreduce/quick_reduce_impl.cuh)
namespace quickreduce {
template <typename T> struct CodecQ4 {};
template <typename T, typename Codec, bool cast_bf2half> struct AllReduceTwoshot {};
template <typename AllReduceKernel, typename T>
static void allreduce_prototype_twoshot(T const* A, T* B, uint32_t N, uint32_t num_blocks, int rank, uint8_t** dbuffer_list,
                                        uint32_t data_offset, uint32_t flag_color, int64_t data_size_per_phase) {}
void* keep_qr[] = {(void*)&allreduce_prototype_twoshot<AllReduceTwoshot<half, CodecQ4<half>, true>, half>};
}
// TensorRT-LLM (cpp/tensorrt_llm/kernels/customAllReduceKernels.cu, communicationKernels/)
namespace tensorrt_llm { namespace kernels {
struct AllReduceParams {};
template <typename T, int RANKS_PER_NODE, bool COPY_INPUT, bool PUSH_MODE>
static void oneShotAllReduceKernel(AllReduceParams params) {}
template <typename T, int RANKS_PER_NODE, bool COPY_INPUT, bool PUSH_MODE>
static void twoShotAllReduceKernel(AllReduceParams params) {}
void* keep_trt[] = {(void*)&oneShotAllReduceKernel<half, 8, true, false>, (void*)&twoShotAllReduceKernel<nv_bfloat16, 4, true, false>};
namespace ar_fusion {
enum AllReduceFusionPattern { kAllReduce = 0, kARResidualRMSNorm = 1 };
template <typename T> struct AllReduceFusionParams {};
template <AllReduceFusionPattern Pattern, typename T, int NRanks, bool Fp32Acc, bool TriggerCompletionAtEnd>
void allreduce_fusion_kernel_oneshot_lamport(AllReduceFusionParams<T> params) {}
template void allreduce_fusion_kernel_oneshot_lamport<kARResidualRMSNorm, nv_bfloat16, 8, true, true>(AllReduceFusionParams<nv_bfloat16>);
}
namespace moe_comm {
struct KernelPointers {};
void moeA2ADispatchKernel(int32_t const* token_selected_experts, const KernelPointers ptrs, int num_payloads, int max_tokens_per_rank, int local_num_tokens, int rank_id, int ep_size, int num_experts_per_rank) {}
}
} }
// Transformer Engine userbuffers (transformer_engine/common/comm_gemm_overlap/userbuffers/userbuffers.cu)
template <int RANKS>
void userbuffers_fp16_sum_inplace_gpu_rr_rs(const int op, const int flagoffset, const int firstrank, const int myrank,
                                            const int gpustep, const int mylineoffset, const int totallines,
                                            void** commbuff, const int handleridx, const uint64_t ub_timeout) {}
template void userbuffers_fp16_sum_inplace_gpu_rr_rs<8>(const int, const int, const int, const int, const int, const int, const int, void**, const int, const uint64_t);
void kuserbuffers_pushsend(int* send_id, int* flagptr, int4* srcptr, int4* dstptr, const int lines) {}
// UCC tl/cuda NVLS (src/components/tl/cuda/kernels/allreduce_kernel.cu)
struct ucc_tl_cuda_nvls_control_t;
template <typename NvlsOps> struct NvlsSumOps {};
template <typename NvlsOps>
void allreduce_kernel_vec32(ucc_tl_cuda_nvls_control_t* mc_bar, ucc_tl_cuda_nvls_control_t* uc_bar, const uint32_t total_blocks,
                            uint64_t launch_counter, uint32_t* base_u32, size_t count_u32, uint32_t rank, uint32_t tsize) {}
template void allreduce_kernel_vec32<NvlsSumOps<float>>(ucc_tl_cuda_nvls_control_t*, ucc_tl_cuda_nvls_control_t*, const uint32_t, uint64_t, uint32_t*, size_t, uint32_t, uint32_t);
namespace deep_ep { namespace intranode { template <int kNumRanks> void barrier(int** barrier_signal_ptrs, int rank) {} template void barrier<8>(int**, int); } }
namespace deep_ep { namespace legacy { namespace internode_ll { template <int kNumThreads> void clean_low_latency_buffer(int* clean_0, int num_clean_int_0, int* clean_1, int num_clean_int_1, int rank, int num_ranks, int* mask_buffer_ptr, int* sync_buffer_ptr) {} template void clean_low_latency_buffer<256>(int*, int, int*, int, int, int, int*, int*); } } }
