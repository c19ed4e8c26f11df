/* nccl.h includes it from C++ only; strand's drivers use no fp8 type. */
