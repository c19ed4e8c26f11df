//! The GPU probe never panics: without a usable GPU (CI, this project's dev
//! machines) `Auto` is a CPU reducer and `Gpu` is refused with the reason.

use strand_kernels::{Backend, Intervals, KernelsError, Reducer, ReducerConfig};

fn driver_present() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

#[test]
fn auto_without_a_gpu_is_a_cpu_reducer_and_gpu_is_refused_with_a_reason() {
    let auto = Reducer::new(Backend::Auto).expect("Auto never fails");
    match Reducer::new(Backend::Gpu) {
        Ok(r) => {
            // A GPU machine: both reducers must see it.
            assert!(driver_present());
            assert!(r.uses_gpu(1) && auto.uses_gpu(usize::MAX) && r.gpu_description().is_some());
        }
        Err(KernelsError::GpuUnavailable(why)) => {
            assert!(!why.is_empty());
            assert!(!auto.uses_gpu(usize::MAX), "Auto picked a GPU that Gpu could not open");
            assert_eq!(auto.gpu_description(), None);
            if !driver_present() {
                assert!(why.contains("libcuda"), "reason should name the missing driver: {why}");
            }
        }
        Err(other) => panic!("Backend::Gpu must fail with GpuUnavailable, got {other:?}"),
    }
    // The fallback reducer works.
    let iv = Intervals { offsets: &[0, 2], start: &[0, 5], end: &[10, 20] };
    assert_eq!(auto.union_length(iv).unwrap(), vec![20]);
}

#[test]
fn config_overrides_apply_only_with_a_gpu() {
    let cfg = ReducerConfig {
        backend: Backend::Auto,
        min_gpu_rows: Some(10),
        device_budget_bytes: Some(1 << 24),
        cpu_threads: Some(0),
    };
    let r = Reducer::from_config(&cfg).unwrap();
    assert_eq!(r.uses_gpu(10), r.gpu_description().is_some());
    let cpu = Reducer::from_config(&ReducerConfig { backend: Backend::Cpu, ..cfg }).unwrap();
    assert!(!cpu.uses_gpu(usize::MAX));
    assert!(!Reducer::cpu().with_min_gpu_rows(0).uses_gpu(1));
    assert!(r.cpu_threads() >= 1 && Reducer::cpu().cpu_threads() == 1);
}
