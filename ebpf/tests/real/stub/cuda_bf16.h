/* nccl.h declares ncclBfloat16 only where the bf16 types exist (CUDA 11+). */
#define __CUDA_BF16_TYPES_EXIST__
