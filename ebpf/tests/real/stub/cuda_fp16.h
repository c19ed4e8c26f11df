/* nccl.h includes it; strand's drivers use no half type. */
