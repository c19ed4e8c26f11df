//! The decoder on arbitrary and corrupted input, in CI on stable Rust (the
//! same entry points as the cargo-fuzz target `fuzz/fuzz_targets/wire_decoder.rs`):
//! it returns frames or an error, never panics, and valid frames round-trip.

use proptest::prelude::*;
use strand_inject::wire::{self, Activity, Connection, FrameBuilder, Header};

fn activity() -> impl Strategy<Value = Activity> {
    let ts = (any::<u64>(), any::<u64>());
    let ids = (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>());
    prop_oneof![
        (ts, ids, 0u32..5, any::<[i32; 3]>(), any::<[i32; 3]>()).prop_map(
            |((start, end), (c, d, x, s), name, grid, block)| {
                Activity::Kernel(wire::Kernel {
                    start,
                    end,
                    correlation_id: c,
                    device_id: d,
                    context_id: x,
                    stream_id: s,
                    name,
                    grid,
                    block,
                })
            }
        ),
        (ts, ids, any::<u64>(), any::<[u8; 4]>()).prop_map(|((start, end), (c, d, x, s), bytes, k)| Activity::Memcpy(
            wire::Memcpy {
                start,
                end,
                correlation_id: c,
                device_id: d,
                context_id: x,
                stream_id: s,
                bytes,
                copy_kind: k[0],
                src_kind: k[1],
                dst_kind: k[2],
                flags: k[3]
            }
        )),
        (ts, ids, any::<u64>(), any::<u32>(), any::<u16>()).prop_map(
            |((start, end), (c, d, x, s), bytes, value, memory_kind)| {
                Activity::Memset(wire::Memset {
                    start,
                    end,
                    correlation_id: c,
                    device_id: d,
                    context_id: x,
                    stream_id: s,
                    bytes,
                    value,
                    memory_kind,
                })
            }
        ),
        (ts, ids, any::<u32>(), proptest::option::of(0u32..1000)).prop_map(
            |((start, end), (c, x, s, ty), event_id, ret)| Activity::Sync(wire::Sync {
                start,
                end,
                correlation_id: c,
                context_id: x,
                stream_id: s,
                sync_type: ty,
                event_id,
                ret
            })
        ),
        (ts, ids, any::<u8>(), 0u32..5).prop_map(|((start, end), (c, t, cbid, ret), domain, name)| Activity::Api(
            wire::Api { start, end, correlation_id: c, thread_id: t, domain, cbid, name, ret }
        )),
        (any::<u32>(), any::<[u8; 16]>(), 0u32..5).prop_map(|(id, uuid, name)| Activity::Device(wire::Device {
            id,
            uuid,
            name
        })),
    ]
}

fn frame(names: &[(u32, Vec<u8>)], acts: &[Activity], seq: u64) -> Vec<u8> {
    let mut b = FrameBuilder::new();
    for (id, n) in names {
        b.push_name(*id, n);
    }
    for a in acts {
        b.push(a);
    }
    b.finish(Header { pid: 1, cupti_version: 24, seq, ..Header::default() }).to_vec()
}

/// Everything the agent does with a frame, on bytes it did not make.
fn exercise(bytes: &[u8]) {
    if let Ok((_, records)) = wire::decode(bytes) {
        for r in records {
            let _ = r;
        }
    }
    let mut c = Connection::new();
    if let Ok(f) = c.decode(bytes) {
        for a in &f.activities {
            let _ = c.name(a.name_id());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), count in 0u32..40) {
        let mut f = frame(&[], &[], 0);
        f[40..44].copy_from_slice(&count.to_le_bytes());
        f.extend_from_slice(&body);
        exercise(&f);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn valid_frames_round_trip(acts in proptest::collection::vec(activity(), 0..200), names in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4)) {
        let names: Vec<(u32, Vec<u8>)> = names.into_iter().enumerate().map(|(i, n)| (i as u32 + 1, n)).collect();
        let f = frame(&names, &acts, 7);
        let mut c = Connection::new();
        let got = c.decode(&f).unwrap();
        prop_assert_eq!(got.activities, acts);
        for (id, n) in &names {
            prop_assert_eq!(c.name(*id).map(|s| s.to_string()), Some(String::from_utf8_lossy(n).into_owned()));
        }
    }

    #[test]
    fn corrupted_frames_are_rejected_or_read_never_panic(acts in proptest::collection::vec(activity(), 1..50), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut f = frame(&[(1, b"kernel".to_vec())], &acts, 1);
        let i = at.index(f.len());
        f[i] = byte;
        exercise(&f);
        f.truncate(cut.index(f.len()));
        exercise(&f);
    }
}
