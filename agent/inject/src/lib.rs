//! strand-inject: the CUPTI injection library and its wire format.
//!
//! Built as a `cdylib`, the CUDA driver loads it through
//! `CUDA_INJECTION64_PATH` and calls [`InitializeInjection`](inject::InitializeInjection):
//! it collects kernel, memcpy, memset and synchronization activity records
//! (CLOCK_MONOTONIC timestamps) and streams them to `strand-agent` over a
//! Unix socket, dropping and counting rather than ever blocking the workload.
//!
//! Built as an `rlib`, the agent uses [`wire`] (frame decoder) and [`sock`].
//! The modules split what can be tested without a GPU from the FFI:
//! - [`layout`]: CUPTI record structs per CUDA release, chosen by version;
//! - [`convert`]: record bytes → wire records (pure);
//! - [`wire`]: frame encoder and decoder;
//! - [`sender`]: bounded queue, background sender, drop accounting;
//! - [`sock`]: `SOCK_SEQPACKET` helpers;
//! - `inject`: `InitializeInjection` and the CUPTI callbacks.

pub mod convert;
pub mod inject;
pub mod layout;
pub mod sender;
pub mod sock;
pub mod wire;
