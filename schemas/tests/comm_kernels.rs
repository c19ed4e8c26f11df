//! Every entry of the table of communication kernels recognises the names
//! its library really gives its kernels: mangled as CUPTI reports them (made
//! from the sources' signatures by a host C++ compiler, see
//! `data/comm_kernel_signatures.cpp`) and demangled as Kineto traces show
//! them. And the kernels around them that are not communication stay compute.

use strand_schemas::category::{Category, classify};
use strand_schemas::comm_kernels::{COMM_KERNELS, CommKernels, CommKind, builtin_entry, nccl_op};

use CommKind::{Collective as C, PointToPoint as P};

/// (kernel name as emitted, library, kind).
const NAMES: &[(&str, &str, CommKind)] = &[
    // NCCL ≥ 2.19 (src/device/generate.py), mangled and as Kineto prints it; RCCL's unrolled generic kernel.
    ("_Z40ncclDevKernel_AllReduce_Sum_bf16_RING_LL24ncclDevKernelArgsStorageILm4096EE", "nccl", C),
    ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "nccl", C),
    ("_Z21ncclDevKernel_Generic24ncclDevKernelArgsStorageILm4096EE", "nccl", C),
    ("ncclDevKernel_Generic_1", "nccl", C),
    ("_Z22ncclDevKernel_SendRecv24ncclDevKernelArgsStorageILm4096EE", "nccl", P),
    // NCCL < 2.19, as in the shared Kineto traces.
    ("ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)", "nccl", C),
    ("_Z38ncclKernel_AllReduce_RING_LL_Sum_floatP11ncclDevCommmP8ncclWork", "nccl", C),
    ("ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)", "nccl", P),
    // NCCL symmetric kernels: 2.27 and ≥ 2.28 (src/device/symmetric/generate.py).
    ("_Z29ncclSymDevKernel_AllGather_LLPK14ncclSymDevArgs", "nccl", C),
    ("_Z46ncclSymkDevKernel_AllReduce_AGxLLMC_R_sum_bf1626ncclSymkDevWorkArgsStorageILm4096EE", "nccl", C),
    // MSCCL (msccl_kernel.h), and inside RCCL with its fullOps suffix.
    ("_Z24mscclKernel_Sum_float_LLP11ncclDevCommP9mscclAlgoP9mscclWork", "msccl", C),
    ("mscclKernel_Sum_half_Simple_false(ncclDevComm*, mscclAlgo*, mscclWork*)", "msccl", C),
    ("_Z33mscclKernel_Sum_half_Simple_falseP11ncclDevCommP9mscclAlgoP9mscclWork", "msccl", C),
    // MSCCL++.
    ("_ZN7mscclpp15executionKernelI6__halfEEviPT_S3_S3_jmPNS_19DeviceExecutionPlanEjj", "mscclpp", C),
    (
        "_ZN7mscclpp10collective17allreduceFullmeshILNS_8ReduceOpE0E6__halfS3_EEvPT0_S5_S5_PNS_12DeviceHandleINS_13MemoryChannelEEES9_miiim",
        "mscclpp",
        C,
    ),
    (
        "void mscclpp::collective::allgatherFullmesh<true>(void*, void*, void*, mscclpp::DeviceHandle<mscclpp::MemoryChannel>*, int, int, int, unsigned long)",
        "mscclpp",
        C,
    ),
    (
        "_ZN7mscclpp10collective17allgatherFullmeshILb1EEEvPvS2_S2_PNS_12DeviceHandleINS_13MemoryChannelEEEiiim",
        "mscclpp",
        C,
    ),
    // NVSHMEM on-stream collectives and one-sided operations.
    ("_Z25alltoall_on_stream_kernelIfEviPT_PKS0_mi", "nvshmem", C),
    ("_Z36barrier_on_stream_kernel_threadgroupIL13threadgroup_t2EEvii", "nvshmem", C),
    ("void sync_on_stream_kernel_threadgroup<(threadgroup_t)2>(int, int)", "nvshmem", C),
    ("_Z33sync_on_stream_kernel_threadgroupIL13threadgroup_t2EEvii", "nvshmem", C),
    ("_Z26broadcast_on_stream_kernelIfEviPT_PKS0_mii", "nvshmem", C),
    ("_Z25fcollect_on_stream_kernelIfEviPT_PKS0_mi", "nvshmem", C),
    ("_Z21rdxn_on_stream_kernelIfL10rdxn_ops_t4EEviPT_PKS1_mi", "nvshmem", C),
    ("_Z30reducescatter_on_stream_kernelIfL10rdxn_ops_t4EEviPT_PKS1_mi", "nvshmem", C),
    ("_Z29nvshmemi_proxy_rma_entrypointPvS_15rma_bytesdesc_ti13nvshmemi_op_t", "nvshmem", P),
    ("_Z45nvshmemi_proxy_rma_signal_entrypoint_blockingPvS_15rma_bytesdesc_tPmmii13nvshmemi_op_t", "nvshmem", P),
    ("_ZL40nvshmemi_int_wait_until_on_stream_kernelPViii", "nvshmem", P),
    ("_ZL43nvshmemi_signal_wait_until_on_stream_kernelPVmim", "nvshmem", P),
    ("_ZL25nvshmemi_signal_op_kernelPmmii", "nvshmem", P),
    // DeepEP v1 (csrc/kernels at 79bbb54).
    ("_ZN7deep_ep9intranode15notify_dispatchEPKiPiS2_S3_iiiPKbS3_S3_iiPPvPS3_i", "deep_ep", C),
    ("_ZN7deep_ep9intranode22cached_notify_dispatchILi8EEEvPKiiPPvPPii", "deep_ep", C),
    (
        "_ZN7deep_ep9intranode8dispatchILi8ELi768ELi8192EEEvP4int4PfPiPlS4_S5_S5_PKS2_PKfPKlSA_PKbPKiiiiiiiiiPPviii",
        "deep_ep",
        C,
    ),
    (
        "void deep_ep::intranode::dispatch<8, 768, 8192>(int4*, float*, int*, long*, float*, int*, int*, int4 const*, float const*, long const*, float const*, bool const*, int const*, int, int, int, int, int, int, int, int, void**, int, int, int)",
        "deep_ep",
        C,
    ),
    ("_ZN7deep_ep9intranode21cached_notify_combineILi8EEEvPPvPiiiiPS4_i", "deep_ep", C),
    (
        "_ZN7deep_ep9intranode7combineI13__nv_bfloat16Li8ELi768ELi4096EEEvPT_PfPKS3_PKfS7_S7_PKiSB_SB_PiiiiiPPviii",
        "deep_ep",
        C,
    ),
    ("_ZN7deep_ep9intranode7barrierILi8EEEvPPii", "deep_ep", C),
    (
        "_ZN7deep_ep9internode15notify_dispatchILb0ELi2EEEvPKiPiiS3_S4_S3_S4_iPKbiiiS4_S4_S4_S4_PviPS7_iPS4_i",
        "deep_ep",
        C,
    ),
    (
        "_ZN7deep_ep9internode8dispatchILb0ELi2ELb0ELi16384ELi7ELi2EEEvP4int4PfPlS4_PvPKS2_PKfPKlSA_PiSD_SD_SD_PKiSF_SF_SF_PKbiiiiiiiS6_iiPS6_iiii",
        "deep_ep",
        C,
    ),
    ("_ZN7deep_ep9internode13cached_notifyILb0EEEviiiiPiiiPKiS4_S2_PvPS5_PS2_iib", "deep_ep", C),
    (
        "_ZN7deep_ep9internode7combineILb0ELi2E13__nv_bfloat16Li4ELi16384EEEvP4int4PfPKbPKS3_PKfS9_S9_PKiSD_PKvSD_SD_SD_iiiiPviiPSG_iiii",
        "deep_ep",
        C,
    ),
    (
        "_ZN7deep_ep12internode_ll8dispatchILb1ELb0ELi7168EEEvPvS2_PiPlS3_S3_S3_S4_S2_S3_S2_PKvPKlS3_S3_S3_iiiiiiiiibi",
        "deep_ep",
        C,
    ),
    (
        "_ZN7deep_ep12internode_ll7combineILb0ELi7168ELi9ELi8EEEvPvS2_PiS2_PKvPKlPKfPKiS7_S3_PlS3_iS3_iiiiiiiiiib",
        "deep_ep",
        C,
    ),
    ("_ZN7deep_ep12internode_ll24clean_low_latency_bufferILi256EEEvPiiS2_iiiS2_S2_", "deep_ep", C),
    // DeepEP's legacy namespace (csrc/kernels/legacy) and its elastic kernels (deep_ep/include/deep_ep/impls).
    (
        "_ZN7deep_ep6legacy9intranode8dispatchILi8ELi768ELi8192EEEvP4int4PfPiPlS5_S6_S6_PKS3_PKfPKlSB_PKbPKiiiiiiiiiPPviii",
        "deep_ep",
        C,
    ),
    (
        "void deep_ep::legacy::intranode::cached_notify_combine<8>(void**, int*, int, int, int, int**, int)",
        "deep_ep",
        C,
    ),
    ("void deep_ep::legacy::intranode::barrier<8>(int**, int)", "deep_ep", C),
    ("void deep_ep::legacy::internode::notify_dispatch<false, 2>(int const*, int*, int)", "deep_ep", C),
    ("void deep_ep::legacy::internode::cached_notify<false>(int, int, int, int, int*)", "deep_ep", C),
    ("void deep_ep::legacy::internode::combine<false, 2, __nv_bfloat16, 4, 16384>(int4*, float*)", "deep_ep", C),
    ("void deep_ep::legacy::internode_ll::dispatch<true, false, 7168>(void*, void*, int*)", "deep_ep", C),
    ("void deep_ep::legacy::internode_ll::combine<false, 7168, 9, 8>(void*, void*, int*)", "deep_ep", C),
    ("_ZN7deep_ep6legacy12internode_ll24clean_low_latency_bufferILi256EEEvPiiS3_iiiS3_S3_", "deep_ep", C),
    ("_ZN7deep_ep7elastic13dispatch_implILi1024ELi24EEEvPvPNS0_9sf_pack_tEPlPfS5_", "deep_ep", C),
    ("void deep_ep::elastic::hybrid_dispatch_impl<1024, 24>(void*, deep_ep::elastic::sf_pack_t*)", "deep_ep", C),
    ("_ZN7deep_ep7elastic12combine_implILi1024ELi24EEEvP13__nv_bfloat16PfPiS5_", "deep_ep", C),
    ("void deep_ep::elastic::barrier_impl<1024>(ncclDevComm, ncclWindow_vidmem*, void*, int, int)", "deep_ep", C),
    (
        "void deep_ep::elastic::engram_fetch_impl<1024>(ncclDevComm, ncclWindow_vidmem*, void*, void*, int*)",
        "deep_ep",
        C,
    ),
    ("void deep_ep::elastic::pp_send_impl<32>(ncclDevComm, ncclWindow_vidmem*, void*, long)", "deep_ep", P),
    ("void deep_ep::elastic::pp_recv_impl<32>(ncclDevComm, ncclWindow_vidmem*, void*, long)", "deep_ep", P),
    // PyTorch symmetric memory (anonymous namespace, internal linkage) and IntraNodeComm.
    ("_ZN12_GLOBAL__N_1L26multimem_all_reduce_kernelIfLi16EEEvPT_mPPjmm", "torch_symm_mem", C),
    (
        "void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*, unsigned long, unsigned int**, unsigned long, unsigned long)",
        "torch_symm_mem",
        C,
    ),
    (
        "_ZN12_GLOBAL__N_1L26one_shot_all_reduce_kernelI13__nv_bfloat16Li16ELi8EEEvPPT_S3_S3_mmPPjmm",
        "torch_symm_mem",
        C,
    ),
    (
        "_ZN12_GLOBAL__N_1L26two_shot_all_reduce_kernelI13__nv_bfloat16Li16ELi8ELb0EEEvPPT_S3_mmPPjmm",
        "torch_symm_mem",
        C,
    ),
    (
        "_ZN4c10d15intra_node_commL22oneShotAllReduceKernelILj8EEEvP13__nv_bfloat16mmPPNS0_8P2pStateEPS3_m",
        "torch_symm_mem",
        C,
    ),
    // vLLM and SGLang custom all-reduce (namespace vllm in both), AITER's, QuickReduce.
    (
        "_ZN4vllm26cross_device_reduce_1stageI13__nv_bfloat16Li8EEEvPNS_8RankDataENS_11RankSignalsEPNS_6SignalEPT_ii",
        "vllm_custom_allreduce",
        C,
    ),
    (
        "void vllm::cross_device_reduce_2stage<__half, 4>(vllm::RankData*, vllm::RankSignals, vllm::Signal*, __half*, int, int)",
        "vllm_custom_allreduce",
        C,
    ),
    (
        "_ZN5aiter26cross_device_reduce_2stageI13__nv_bfloat16Li8EEEvPNS_8RankDataENS_11RankSignalsEPNS_6SignalEPT_ii",
        "aiter",
        C,
    ),
    (
        "_ZN11quickreduceL27allreduce_prototype_twoshotINS_16AllReduceTwoshotI6__halfNS_7CodecQ4IS2_EELb1EEES2_EEvPKT0_PS6_jjiPPhjjl",
        "quickreduce",
        C,
    ),
    // TensorRT-LLM.
    (
        "_ZN12tensorrt_llm7kernelsL22oneShotAllReduceKernelI6__halfLi8ELb1ELb0EEEvNS0_15AllReduceParamsE",
        "tensorrt_llm",
        C,
    ),
    (
        "_ZN12tensorrt_llm7kernelsL22twoShotAllReduceKernelI13__nv_bfloat16Li4ELb1ELb0EEEvNS0_15AllReduceParamsE",
        "tensorrt_llm",
        C,
    ),
    (
        "_ZN12tensorrt_llm7kernels9ar_fusion39allreduce_fusion_kernel_oneshot_lamportILNS1_22AllReduceFusionPatternE1E13__nv_bfloat16Li8ELb1ELb1EEEvNS1_21AllReduceFusionParamsIT0_EE",
        "tensorrt_llm",
        C,
    ),
    ("_ZN12tensorrt_llm7kernels8moe_comm20moeA2ADispatchKernelEPKiNS1_14KernelPointersEiiiiii", "tensorrt_llm", C),
    // Transformer Engine userbuffers.
    ("_Z38userbuffers_fp16_sum_inplace_gpu_rr_rsILi8EEviiiiiiiPPvim", "userbuffers", C),
    ("_Z21kuserbuffers_pushsendPiS_P4int4S1_i", "userbuffers", P),
    // UCC NVLS kernels.
    ("_Z22allreduce_kernel_vec32I10NvlsSumOpsIfEEvP26ucc_tl_cuda_nvls_control_tS3_jmPjmjj", "ucc", C),
    (
        "void allreduce_kernel_scalar32<NvlsSumOps<float> >(ucc_tl_cuda_nvls_control_t*, ucc_tl_cuda_nvls_control_t*)",
        "ucc",
        C,
    ),
    ("void allgatherv_kernel_vec32<NvlsCopyOps>(ucc_tl_cuda_nvls_control_t*, ucc_tl_cuda_nvls_control_t*)", "ucc", C),
    ("void reduce_scatter_kernel_vec32<NvlsSumOps<float> >(ucc_tl_cuda_nvls_control_t*)", "ucc", C),
    ("void reduce_scatter_kernel_scalar64<NvlsSumOps<double> >(ucc_tl_cuda_nvls_control_t*)", "ucc", C),
];

#[test]
fn every_library_kernel_is_communication_with_its_library_and_kind() {
    let table = CommKernels::builtin();
    for &(name, library, kind) in NAMES {
        let m = table.lookup(name).unwrap_or_else(|| panic!("not recognised: {name}"));
        assert_eq!((&*m.library, m.kind), (library, kind), "{name}");
        assert_eq!(classify("kernel", name), Category::Communication, "{name}");
    }
}

#[test]
fn every_entry_of_the_table_is_shown_a_real_name() {
    for e in COMM_KERNELS {
        assert!(
            NAMES.iter().any(|(n, _, _)| builtin_entry(n).is_some_and(|x| std::ptr::eq(x, e))),
            "no real kernel name in the test for entry {:?} of {}",
            e.pattern,
            e.library
        );
    }
}

#[test]
fn kernels_next_to_the_libraries_stay_compute() {
    for name in [
        // DeepEP's layout kernel counts tokens locally; Gloo reduces locally.
        "void deep_ep::layout::get_dispatch_layout<256, 32, 8>(long const*, int*, int*, int*, bool*, int, int, int, int)",
        "void gloo::_Kernel_float_cudaSum(float*, float const*, unsigned long)",
        // NCCL's one-rank reduction is a local kernel.
        "void oneRankReduce<FuncPreMulSum<float> >(void*, void*, unsigned long, unsigned long, int, int)",
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1",
        "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, std::array<char*, 1ul> >(int, at::native::FillFunctor<float>, std::array<char*, 1ul>)",
        // A kernel that only takes a communication type as an argument.
        "void my_pack_kernel(ncclDevKernelArgsStorage<4096ul>, deep_ep::intranode::dispatch*)",
    ] {
        assert_eq!(classify("kernel", name), Category::Compute, "{name}");
    }
    assert_eq!(classify("memcpy", "Memcpy PtoP (Device -> Device)"), Category::Copy);
}

#[test]
fn nccl_kernels_name_their_operation() {
    assert_eq!(
        nccl_op("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"),
        Some("allreduce")
    );
    assert_eq!(nccl_op("_Z38ncclKernel_AllReduce_RING_LL_Sum_floatP11ncclDevCommmP8ncclWork"), Some("allreduce"));
    assert_eq!(
        nccl_op("ncclKernel_Broadcast_RING_LL_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)"),
        Some("broadcast")
    );
    assert_eq!(nccl_op("ncclSymkDevKernel_AllReduce_AGxLLMC_R_sum_bf16"), Some("allreduce"));
    assert_eq!(nccl_op("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)"), Some("sendrecv"));
    assert_eq!(nccl_op("ncclDevKernel_Generic_4"), None);
    assert_eq!(nccl_op("deep_ep::intranode::dispatch(int)"), None);
}
