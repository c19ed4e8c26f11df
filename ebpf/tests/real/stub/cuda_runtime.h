/* The CUDA runtime types that nccl.h names, so that the test drivers build
 * against NCCL's real header without the CUDA toolkit. Handles are opaque
 * pointers, as in CUDA's driver_types.h. */
#ifndef STRAND_STUB_CUDA_RUNTIME_H
#define STRAND_STUB_CUDA_RUNTIME_H
#include <stddef.h>
#define CUDART_VERSION 12000
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
#endif
