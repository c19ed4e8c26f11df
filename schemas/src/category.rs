//! Kernel categories of DESIGN §4: compute (C), communication (M), copy (X).
//! Which kernels are communication is the table in [`crate::comm_kernels`].

/// The category of a GPU activity record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Compute,
    Communication,
    Copy,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Compute => "compute",
            Category::Communication => "communication",
            Category::Copy => "copy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "compute" => Some(Category::Compute),
            "communication" => Some(Category::Communication),
            "copy" => Some(Category::Copy),
            _ => None,
        }
    }
}

/// Classifies one record with the built-in table of communication kernels
/// ([`crate::comm_kernels`]): copies and sets are `copy`; kernels of a
/// communication library are `communication`; every other kernel is
/// `compute`. `kind` is the `kernel_events.kind` value (`kernel`, `memcpy`,
/// `memset`). With user patterns, use [`crate::comm_kernels::CommKernels::classify`].
pub fn classify(kind: &str, name: &str) -> Category {
    classify_marked(kind, || is_communication_kernel(name))
}

/// Whether a kernel name is in the built-in table of communication kernels;
/// a reader that sees the same names many times can work this out once per
/// name and classify with [`classify_marked`].
pub fn is_communication_kernel(name: &str) -> bool {
    crate::comm_kernels::builtin_entry(name).is_some()
}

/// [`classify`] with the name's marker test given (asked only for kernels).
pub fn classify_marked(kind: &str, communication_name: impl FnOnce() -> bool) -> Category {
    match kind {
        "memcpy" | "memset" => Category::Copy,
        _ if communication_name() => Category::Communication,
        _ => Category::Compute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nccl_kernels_are_communication_in_every_spelling() {
        for name in [
            "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
            "_Z28ncclDevKernel_AllGather_RING_LL24ncclDevKernelArgsStorageILm4096EE",
            "ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)",
        ] {
            assert_eq!(classify("kernel", name), Category::Communication, "{name}");
        }
        assert_eq!(classify("kernel", "sm90_xmma_gemm_bf16bf16_bf16f32"), Category::Compute);
        assert_eq!(classify("memcpy", "Memcpy HtoD (Pageable -> Device)"), Category::Copy);
        assert_eq!(classify("memset", "Memset (Device)"), Category::Copy);
        for c in [Category::Compute, Category::Communication, Category::Copy] {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
    }
}
