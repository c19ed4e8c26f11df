//! What an agent ships of its CUPTI records (issue 17): by default the full
//! `kernel_events` stay in the node's data directory and the collector gets
//! the per-window `kernel_summaries`; with `collector.kernel_events = true`
//! it gets the records too; `strand-agent ship-kernel-events JOB` ships one
//! job's records on demand, to a running agent. Real processes: a collector, an agent with one
//! simulated GPU, and the injection library's real sender.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use strand_inject::sender::{Batch, Sender, SenderConfig};
use strand_inject::wire::{Activity, Device, Kernel};
use strand_schemas::clock::{MonoToUtc, utc_now_ns};
use strand_schemas::{KernelEvent, KernelSummary, Table, read_file};
use strand_tests::*;

const MS: i64 = 1_000_000;
const TOKEN: &str = "e2e-secret-token-for-node-k";
/// The simulated GPU 0's UUID (`--simulate-gpus`), as CUPTI's 16 bytes.
const GPU0: [u8; 16] = [0x51, 0x73, 0xa1, 0xd0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0];
const GEMM: &str = "_Z19sm90_xmma_gemm_bf16PKvS0_Pv";
const NCCL: &str = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL";

fn kernel(corr: u32, name: u32, start_utc: i64, end_utc: i64, clock: &MonoToUtc) -> Activity {
    Activity::Kernel(Kernel {
        start: clock.to_monotonic(start_utc) as u64,
        end: clock.to_monotonic(end_utc) as u64,
        correlation_id: corr,
        device_id: 0,
        context_id: 1,
        stream_id: 7,
        name,
        grid: [132, 1, 1],
        block: [256, 1, 1],
    })
}

/// Rows of `T` in every Parquet file under `dir/<table>` (landed or not).
fn rows_of<T: Table>(dir: &Path) -> Vec<T> {
    files(dir, ".parquet")
        .iter()
        .filter(|f| f.to_string_lossy().contains(&format!("/{}/", T::NAME)))
        .flat_map(|f| read_file::<T>(f).unwrap())
        .collect()
}

const JOB: &str = "llama-7b/run-3";

/// Runs a collector and an agent of job [`JOB`] that receives 3 kernels (2
/// GEMMs of 100 and 300 ms, one all-reduce of 400 ms) in a 2 s window, then
/// stops both. With `request`, once the records are committed in the data
/// directory, asks the running agent to ship their job's records (the job
/// the agent found for the test process: [`JOB`] unless the environment or
/// cgroup names one) and returns that job.
fn run(dir: &Path, ship_kernel_events: bool, request: bool) -> Option<String> {
    let port = free_port();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let sha = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(|mut c| {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(TOKEN.as_bytes())?;
        c.wait_with_output()
    });
    let sha = String::from_utf8(sha.unwrap().stdout).unwrap();
    let sha = sha.split_whitespace().next().unwrap().to_string();
    std::fs::write(
        dir.join("collector.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\n[storage]\nroot = \"{}\"\n[[nodes]]\ncluster = \"e2e\"\nnode = \"node-k\"\ntoken_sha256 = \"{sha}\"\n",
            dir.join("collected").display()
        ),
    )
    .unwrap();
    let mut collector = Proc::spawn(
        Command::new(bin("strand"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("collector.toml"))
            .env("STRAND_LOG", "warn"),
        "strand serve",
    );
    assert!(eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
    let data = dir.join("data");
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "cluster = \"e2e\"\nnode = \"node-k\"\njob_id = \"{JOB}\"\ndata_dir = \"{}\"\n[metrics]\nlisten = \"\"\n\
             [output]\nrotate_interval = \"1s\"\n[nvml]\nperiod = \"250ms\"\ninfiniband = false\n[ebpf]\nenabled = false\n\
             [windows]\nperiod = \"2s\"\nlateness = \"3s\"\nnccl_join_hold = \"1s\"\n\
             [collector]\nurl = \"http://127.0.0.1:{port}\"\ntoken_file = \"{}\"\nkernel_events = {ship_kernel_events}\n",
            data.display(),
            dir.join("token").display()
        ),
    )
    .unwrap();
    let socket = data.join("cupti.sock");
    let mut agent = simulated_agent(&cfg, &socket);
    let period = 2_000 * MS;
    let t0 = (utc_now_ns() / period + 2) * period;
    let clock = MonoToUtc::measure();
    let acts = vec![
        Activity::Device(Device { id: 0, uuid: GPU0, name: 3 }),
        kernel(1, 1, t0 + 100 * MS, t0 + 200 * MS, &clock),
        kernel(2, 1, t0 + 300 * MS, t0 + 600 * MS, &clock),
        kernel(3, 2, t0 + 500 * MS, t0 + 900 * MS, &clock),
    ];
    let names = vec![
        (1u32, GEMM.as_bytes().to_vec().into_boxed_slice()),
        (2u32, NCCL.as_bytes().to_vec().into_boxed_slice()),
        (3u32, b"NVIDIA H100 80GB HBM3 (simulated)".to_vec().into_boxed_slice()),
    ];
    let sender = Sender::start(SenderConfig::new(socket, std::process::id(), 130001), None).unwrap();
    assert!(sender.submit(Batch { activities: acts, names }));
    assert!(sender.flush(Duration::from_secs(10)), "the agent took the records");
    sender.shutdown(Duration::from_secs(2));
    let close_at = t0 + period + 3_000 * MS;
    std::thread::sleep(Duration::from_nanos((close_at - utc_now_ns()).max(0) as u64 + 1_500_000_000));
    let mut requested = None;
    if request {
        let kept = rows_of::<KernelEvent>(&data);
        assert_eq!(kept.len(), 3, "committed and kept before the request");
        let job = kept[0].job_id.clone().expect("the configured job_id at least");
        let out = Command::new(bin("strand-agent"))
            .args(["ship-kernel-events", &job, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("will ship the full kernel_events of job {job}")), "{said}");
        let collected = dir.join("collected");
        eventually(Duration::from_secs(20), || !rows_of::<KernelEvent>(&collected).is_empty());
        requested = Some(job);
    }
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(30)).success());
    collector.signal(SIGTERM);
    assert!(collector.wait(Duration::from_secs(30)).success());
    requested
}

/// The summary as (name, category, count, total, min, max), sorted.
fn summary(rows: &[KernelSummary]) -> Vec<(String, String, i64, i64, i64, i64)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|s| (s.name.to_string(), s.category.clone(), s.count, s.total_ns, s.min_ns, s.max_ns))
        .collect();
    v.sort();
    v
}

#[test]
fn by_default_kernel_events_stay_on_the_node_and_the_collector_gets_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), false, false);
    let (collected, data) = (dir.path().join("collected"), dir.path().join("data"));
    assert!(rows_of::<KernelEvent>(&collected).is_empty(), "no kernel_events shipped");
    assert_eq!(rows_of::<KernelEvent>(&data).len(), 3, "the records stay in the data directory");
    let shipped = summary(&rows_of::<KernelSummary>(&collected));
    assert_eq!(
        shipped,
        vec![
            (GEMM.into(), "compute".into(), 2, 400 * MS, 100 * MS, 300 * MS),
            (NCCL.into(), "communication".into(), 1, 400 * MS, 400 * MS, 400 * MS),
        ]
    );
    assert!(rows_of::<KernelSummary>(&data).is_empty(), "shipped summaries left the spool");
}

#[test]
fn with_kernel_events_on_the_collector_gets_the_records_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), true, false);
    let (collected, data) = (dir.path().join("collected"), dir.path().join("data"));
    let mut starts: Vec<i64> = rows_of::<KernelEvent>(&collected).iter().map(|k| k.start_ns).collect();
    starts.sort();
    starts.dedup();
    assert_eq!(starts.len(), 3, "every record shipped once");
    assert_eq!(rows_of::<KernelEvent>(&collected).len(), 3);
    assert!(rows_of::<KernelEvent>(&data).is_empty(), "shipped records left the spool");
    assert_eq!(summary(&rows_of::<KernelSummary>(&collected)).len(), 2);
}

#[test]
fn on_demand_one_job_kernel_events_ship_from_a_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let job = run(dir.path(), false, true);
    let (collected, data) = (dir.path().join("collected"), dir.path().join("data"));
    let shipped = rows_of::<KernelEvent>(&collected);
    assert_eq!(shipped.len(), 3, "the job's records, each once");
    assert!(shipped.iter().all(|k| k.job_id == job));
    assert!(rows_of::<KernelEvent>(&data).is_empty(), "shipped records left the spool");
    assert_eq!(summary(&rows_of::<KernelSummary>(&collected)).len(), 2, "the summary ships as always");
}
