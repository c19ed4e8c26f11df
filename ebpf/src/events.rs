//! Records as they come out of the ring buffers, decoded into the skeleton's
//! generated types (whose layout comes from `src/bpf/strand.h`).

use crate::skel::types;

// Numbering of `enum event_kind` and the flags in src/bpf/strand.h.
pub const EV_NCCL_CALL: u32 = 1;
pub const EV_NCCL_INIT: u32 = 2;
pub const EV_NCCL_VERSION: u32 = 3;
pub const EV_CUDA_SYNC: u32 = 4;
pub const EV_EXEC: u32 = 5;
pub const EV_EXIT: u32 = 6;

pub const F_COMM_KNOWN: u32 = 1;
pub const F_SPLIT_COUNT: u32 = 2;
pub const F_UNFINISHED: u32 = 4;
pub const F_UID: u32 = 8;
pub const F_HANDLE: u32 = 16;

// `enum nccl_op` values user space acts on.
pub const OP_BROADCAST: u32 = 2;
pub const OP_BCAST: u32 = 3;
pub const OP_ALLTOALL: u32 = 7;
pub const OP_SEND: u32 = 8;
pub const OP_RECV: u32 = 9;
pub const OP_INIT_ALL: u32 = 14;
pub const OP_SPLIT: u32 = 15;
pub const OP_DESTROY: u32 = 16;
pub const OP_ABORT: u32 = 17;
pub const OP_REDUCE: u32 = 4;

// Indexes of the `lost` map (`enum source`).
pub const SRC_NCCL: u32 = 0;
pub const SRC_CUDA: u32 = 1;
pub const SRC_PROC: u32 = 2;
pub const SRC_NCCL_STATE: u32 = 3;
pub const SRC_CUDA_STATE: u32 = 4;
pub const SRC_TRACKED: u32 = 5;
pub const NR_COUNTERS: u32 = 6;

// Slots of the `calls` map.
pub const CALL_CUDA: u32 = 32;
pub const NR_CALLS: u32 = 40;

/// `cuda_sync_calls.api` of `enum cuda_api`.
pub fn cuda_api_name(api: u32) -> Option<&'static str> {
    Some(match api {
        1 => "cudaStreamSynchronize",
        2 => "cudaDeviceSynchronize",
        3 => "cudaEventSynchronize",
        4 => "cuStreamSynchronize",
        5 => "cuCtxSynchronize",
        6 => "cuEventSynchronize",
        _ => return None,
    })
}

/// One record from a ring buffer.
#[derive(Debug, Clone)]
pub enum Record {
    NcclCall(types::nccl_call),
    NcclInit(Box<types::nccl_init>),
    NcclVersion(types::nccl_version),
    CudaSync(types::cuda_sync),
    Exec(Box<types::proc_exec>),
    Exit(types::proc_exit),
    /// Too short for its kind, or an unknown kind (a BPF/Rust mismatch).
    Malformed,
}

/// Reads a `T` from the front of `data`.
///
/// `T` must be one of the skeleton's record types: `repr(C)` structs of
/// integers and integer arrays, for which every bit pattern is valid.
fn read<T: Copy>(data: &[u8]) -> Option<T> {
    (data.len() >= size_of::<T>()).then(|| {
        // SAFETY: length checked above; `T` is plain old data (see above), and
        // `read_unaligned` copes with the ring buffer's 8-byte alignment.
        unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) }
    })
}

impl Record {
    pub fn decode(data: &[u8]) -> Record {
        let Some(kind) = read::<u32>(data) else { return Record::Malformed };
        let rec = match kind {
            EV_NCCL_CALL => read(data).map(Record::NcclCall),
            EV_NCCL_INIT => read(data).map(|r| Record::NcclInit(Box::new(r))),
            EV_NCCL_VERSION => read(data).map(Record::NcclVersion),
            EV_CUDA_SYNC => read(data).map(Record::CudaSync),
            EV_EXEC => read(data).map(|r| Record::Exec(Box::new(r))),
            EV_EXIT => read(data).map(Record::Exit),
            _ => None,
        };
        rec.unwrap_or(Record::Malformed)
    }
}

/// A NUL-terminated C string from a fixed `char` array.
pub fn c_string(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Splits a `wait(2)` status into (exit code, signal).
pub fn exit_status(status: i32) -> (Option<i32>, Option<i32>) {
    let signal = status & 0x7f;
    if signal == 0 { (Some((status >> 8) & 0xff), None) } else { (None, Some(signal)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        let mut bytes = vec![0u8; size_of::<types::nccl_call>()];
        bytes[..4].copy_from_slice(&EV_NCCL_CALL.to_le_bytes());
        bytes[8..12].copy_from_slice(&77u32.to_le_bytes()); // pid
        match Record::decode(&bytes) {
            Record::NcclCall(c) => assert_eq!(c.pid, 77),
            other => panic!("decoded {other:?}"),
        }
        assert!(matches!(Record::decode(&bytes[..20]), Record::Malformed));
        assert!(matches!(Record::decode(&[9, 0, 0, 0, 1, 2, 3, 4]), Record::Malformed));
        assert!(matches!(Record::decode(&[1]), Record::Malformed));
    }

    #[test]
    fn statuses() {
        assert_eq!(exit_status(3 << 8), (Some(3), None));
        assert_eq!(exit_status(9), (None, Some(9)));
        assert_eq!(exit_status(0x80 | 11), (None, Some(11)));
        assert_eq!(c_string(&[97, 98, 99, 0, 100]), "abc");
    }
}
