//! Live windows in a running agent (issue 6, "Live"): a CUPTI client (the
//! injection library's real sender) sends a known kernel timeline; the
//! agent's `windows` rows must decompose it exactly as DESIGN §4 says.

use std::time::Duration;

use strand_inject::sender::{Batch, Sender, SenderConfig};
use strand_inject::wire::{Activity, Device, Kernel};
use strand_schemas::clock::{MonoToUtc, utc_now_ns};
use strand_schemas::{Window, read_file};
use strand_tests::*;

const MS: i64 = 1_000_000;
/// The simulated GPU 0's UUID (`--simulate-gpus`), as CUPTI's 16 bytes.
const GPU0: [u8; 16] = [0x51, 0x73, 0xa1, 0xd0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0];

fn kernel(corr: u32, name: u32, stream: u32, start_utc: i64, end_utc: i64, clock: &MonoToUtc) -> Activity {
    Activity::Kernel(Kernel {
        start: clock.to_monotonic(start_utc) as u64,
        end: clock.to_monotonic(end_utc) as u64,
        correlation_id: corr,
        device_id: 0,
        context_id: 1,
        stream_id: stream,
        name,
        grid: [132, 1, 1],
        block: [256, 1, 1],
    })
}

#[test]
fn a_known_kernel_timeline_is_decomposed_exactly_in_the_live_windows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = agent_config(dir.path(), &data, "[ebpf]\nenabled = false\n");
    let socket = data.join("cupti.sock");
    let mut agent = simulated_agent(&cfg, &socket);

    // A window a little in the future: [t0, t0 + 2 s).
    let period = 2_000 * MS;
    let t0 = (utc_now_ns() / period + 2) * period;
    let clock = MonoToUtc::measure();
    // compute A [100, 400) ms and B [300, 600) ms on two streams: union 500 ms;
    // NCCL C [500, 900) ms: 100 ms under compute, 300 ms exposed; idle 1200 ms.
    let acts = vec![
        Activity::Device(Device { id: 0, uuid: GPU0, name: 3 }),
        kernel(1, 1, 7, t0 + 100 * MS, t0 + 400 * MS, &clock),
        kernel(2, 1, 8, t0 + 300 * MS, t0 + 600 * MS, &clock),
        kernel(3, 2, 9, t0 + 500 * MS, t0 + 900 * MS, &clock),
    ];
    let names = vec![
        (1u32, b"_Z19sm90_xmma_gemm_bf16PKvS0_Pv".to_vec().into_boxed_slice()),
        (2u32, b"ncclDevKernel_AllReduce_Sum_bf16_RING_LL".to_vec().into_boxed_slice()),
        (3u32, b"NVIDIA H100 80GB HBM3 (simulated)".to_vec().into_boxed_slice()),
    ];
    let sender = Sender::start(SenderConfig::new(socket, std::process::id(), 130001), None).unwrap();
    assert!(sender.submit(Batch { activities: acts, names }));
    assert!(sender.flush(Duration::from_secs(10)), "the agent took the records");
    sender.shutdown(Duration::from_secs(2));

    // Let the window close on its own (end + lateness), then stop the agent.
    let close_at = t0 + period + 3_000 * MS;
    std::thread::sleep(Duration::from_nanos((close_at - utc_now_ns()).max(0) as u64 + 1_500_000_000));
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(30)).success());

    let windows: Vec<Window> =
        files(&data.join("windows"), ".parquet").iter().flat_map(|f| read_file::<Window>(f).unwrap()).collect();
    let w = windows.iter().find(|w| w.start_ns == t0 && w.gpu_index == 0).unwrap_or_else(|| {
        panic!(
            "no window at {t0} for GPU 0 in {:?}",
            windows.iter().map(|w| (w.gpu_index, w.start_ns)).collect::<Vec<_>>()
        )
    });
    assert_eq!(w.end_ns, t0 + period);
    assert!(w.coverage.contains("cupti") && w.coverage.contains("nvml"), "{}", w.coverage);
    assert_eq!(w.compute_ns, Some(500 * MS));
    assert_eq!(w.comm_exposed_ns, Some(300 * MS));
    assert_eq!(w.memcpy_exposed_ns, Some(0));
    assert_eq!(w.idle_ns, Some(1_200 * MS));
    assert_eq!(w.comm_ns, Some(400 * MS));
    assert_eq!(w.comm_overlapped_ns, Some(100 * MS));
    assert_eq!(w.overlap_ratio, Some(0.25));
    assert_eq!(w.kernel_count, Some(3));
    let sum = w.compute_ns.unwrap() + w.comm_exposed_ns.unwrap() + w.memcpy_exposed_ns.unwrap() + w.idle_ns.unwrap();
    assert_eq!(sum, w.end_ns - w.start_ns, "the categories add up to the window");
    assert!(w.reported_utilization_ratio.is_some() && w.sm_active_ratio.is_some(), "NVML and GPM in the same window");
    assert_eq!(w.mfu, None, "no model FLOPs without markers");
    assert!(w.tensor_estimate.is_some(), "the tensor-pipe estimate stands in, labelled as such");
}
