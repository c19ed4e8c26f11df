//! The Kineto importer (`strand import`, `strand postmortem`) must turn any
//! bytes into a trace or a clear error: no panic, no hang, memory bounded
//! by the longest-value limit.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strand_offline::kineto::{KinetoOptions, read_trace_from};

fuzz_target!(|data: &[u8]| {
    let opts = KinetoOptions { cluster: "fuzz".into(), max_value_bytes: Some(1 << 20), ..Default::default() };
    let Ok(mut trace) = read_trace_from(data, "fuzz", Path::new("fuzz.json"), &opts) else { return };
    // Everything the import and the postmortem read off a trace.
    let _ = (trace.kernel_count(), trace.kernel_span(), trace.kernels());
    let steps = trace.step_names.len();
    trace.apply_hta_scope(steps);
    let _ = trace.kernels();
});
