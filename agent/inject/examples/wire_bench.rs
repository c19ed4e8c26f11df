//! Throughput of the pieces on the record path, on the machine it runs on:
//! CUPTI record → wire record (converter), frame encode, frame decode, and
//! the sender → socket → decoder path end to end.
//!
//! ```text
//! cargo run --release -p strand-inject --example wire_bench
//! ```

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use strand_inject::convert::{Converter, Resolve, SyntheticBuffer};
use strand_inject::layout::{self, Kernel10, kind};
use strand_inject::sender::{Batch, Sender, SenderConfig};
use strand_inject::sock::{self, Received};
use strand_inject::wire::{self, Activity, Connection, FrameBuilder, Header};

struct Names;
impl Resolve for Names {
    fn c_string(&self, ptr: u64) -> Option<&[u8]> {
        const N: [&[u8]; 4] = [
            b"_Z19sm90_xmma_gemm_bf16PKvS0_Pv",
            b"ncclDevKernel_AllReduce_Sum_bf16_RING_LL",
            b"elementwise_kernel",
            b"reduce_kernel",
        ];
        Some(N[(ptr % 4) as usize])
    }
    fn api_name(&self, _: u8, _: u32) -> Option<Vec<u8>> {
        None
    }
}

fn kernel(i: u32) -> Activity {
    Activity::Kernel(wire::Kernel {
        start: 1_000_000 + i as u64 * 1000,
        end: 1_000_500 + i as u64 * 1000,
        correlation_id: i,
        device_id: 0,
        context_id: 1,
        stream_id: 7,
        name: 1 + i % 4,
        grid: [132, 1, 1],
        block: [256, 1, 1],
    })
}

fn rate(n: u64, t: Duration) -> String {
    format!("{:.1} M records/s", n as f64 / t.as_secs_f64() / 1e6)
}

fn main() {
    const N: u32 = 2_000_000;

    // Converter: CUDA 13.0 kernel records, as CUPTI hands them over.
    let mut buf = SyntheticBuffer::default();
    for i in 0..4096u32 {
        buf.push(&Kernel10 {
            kind: kind::CONCURRENT_KERNEL,
            start: i as u64,
            end: i as u64 + 1,
            correlation_id: i,
            name: i as u64,
            ..Default::default()
        });
    }
    let mut conv = Converter::new(&layout::CUDA_13_0);
    let t = Instant::now();
    let mut n = 0u64;
    while n < N as u64 {
        for r in buf.records() {
            std::hint::black_box(conv.convert(r, &Names).unwrap());
            n += 1;
        }
    }
    println!("convert (CUpti_ActivityKernel10 -> wire):   {}", rate(n, t.elapsed()));

    // Encode and decode frames.
    let acts: Vec<Activity> = (0..N).map(kernel).collect();
    let t = Instant::now();
    let mut frames = Vec::new();
    let mut b = FrameBuilder::new();
    for a in &acts {
        if !b.push(a) {
            frames.push(b.finish(Header::default()).to_vec());
            b.clear();
            b.push(a);
        }
    }
    frames.push(b.finish(Header::default()).to_vec());
    let enc = t.elapsed();
    let bytes: usize = frames.iter().map(Vec::len).sum();
    println!(
        "encode:                                    {} ({:.1} bytes/record, {} frames)",
        rate(N as u64, enc),
        bytes as f64 / N as f64,
        frames.len()
    );
    let t = Instant::now();
    let mut c = Connection::new();
    let mut got = 0u64;
    for (seq, f) in frames.iter_mut().enumerate() {
        f[16..24].copy_from_slice(&(seq as u64).to_le_bytes());
        got += c.decode(f).unwrap().activities.len() as u64;
    }
    println!("decode (Connection::decode):               {}", rate(got, t.elapsed()));

    // Sender thread -> SOCK_SEQPACKET -> decoding receiver.
    let dir = std::env::temp_dir().join(format!("strand-wire-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let listener = sock::listen(&path, 16).unwrap();
    let rx = std::thread::spawn(move || {
        let conn = loop {
            if let Ok(c) = sock::accept(listener.as_raw_fd()) {
                break c;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let mut c = Connection::new();
        let mut buf = vec![0u8; wire::MAX_FRAME];
        let mut n = 0u64;
        let t = Instant::now();
        while n < N as u64 {
            match sock::recv(conn.as_raw_fd(), &mut buf) {
                Ok(Received::Message(len)) => n += c.decode(&buf[..len]).unwrap().activities.len() as u64,
                Ok(_) => break,
                Err(_) => {
                    if t.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        }
        (n, t.elapsed())
    });
    let s = Sender::start(
        SenderConfig { queue_records: 1 << 22, ..SenderConfig::new(path.clone(), std::process::id(), 130001) },
        None,
    )
    .unwrap();
    let t = Instant::now();
    for (i, chunk) in acts.chunks(8192).enumerate() {
        let names = if i == 0 {
            (1..=4u32).map(|id| (id, Names.c_string(id as u64 - 1).unwrap().into())).collect()
        } else {
            vec![]
        };
        s.submit(Batch { activities: chunk.to_vec(), names });
    }
    let submit = t.elapsed();
    let (n, elapsed) = rx.join().unwrap();
    let st = s.stats();
    println!(
        "submit (producer side, per 8192 batch):    {:.2} us per batch",
        submit.as_secs_f64() * 1e6 / (N as f64 / 8192.0)
    );
    println!(
        "sender -> socket -> decode:                {} ({} delivered, {} dropped)",
        rate(n, elapsed),
        n,
        st.dropped_records
    );
    s.shutdown(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}
