//! The agent's decoder must turn any bytes into frames or a clear error:
//! no panic, no unbounded allocation, no hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strand_inject::wire::{Connection, decode};

fuzz_target!(|data: &[u8]| {
    // One frame, stateless.
    if let Ok((_, records)) = decode(data) {
        for r in records {
            let _ = r;
        }
    }
    // A connection: the input cut into frames by 2-byte little-endian lengths,
    // so names defined in one frame are used by the next.
    let mut conn = Connection::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let (frame, tail) = rest[2..].split_at(n.min(rest.len() - 2));
        if let Ok(f) = conn.decode(frame) {
            for a in &f.activities {
                let _ = conn.name(a.name_id());
            }
        }
        rest = tail;
    }
});
