//! NCCL's vocabulary and its communicator hash, as the library computes it.
//!
//! The hash is NCCL's `comm->commHash`: the same on every rank of a
//! communicator, so it names a communicator across processes and nodes.
//! NCCL changed how it computes it (see `docs/ebpf.md`, "Communicator identity"):
//!
//! | NCCL | root communicator (from a unique id) | child of `ncclCommSplit` |
//! |---|---|---|
//! | 2.x – 2.17 | DJB2a of the 128-byte id | (no split) |
//! | 2.18 – 2.23 | DJB2a of the 128-byte id | DJB2a of `"%016lx-%d"` (parent hash, color), zero-padded to 128 bytes |
//! | 2.24 – 2.25 | DJB2a of the 128-byte id | DJB2a of `"%016lx-%d-%d"` (parent hash, split count, color) |
//! | 2.26 – 2.30 | `getHash` (two-word mixer) of the id | mixer over (parent hash, split count, color) |
//!
//! Read from NCCL's source at every release tag from v2.18.1 to v2.30.7
//! (`src/init.cc`, `src/misc/utils.cc`, `src/include/bitops.h`).

/// Bytes of `ncclUniqueId`.
pub const UNIQUE_ID_BYTES: usize = 128;

/// An NCCL version, as `ncclGetVersion` and the `NCCL version x.y.z` string give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NcclVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NcclVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Decodes `NCCL_VERSION_CODE`: `X*1000+Y*100+Z` up to 2.8, `X*10000+Y*100+Z` after.
    pub fn from_code(code: i32) -> Option<Self> {
        if code <= 0 {
            return None;
        }
        let code = code as u32;
        let v = if code >= 10000 {
            Self::new(code / 10000, code / 100 % 100, code % 100)
        } else {
            Self::new(code / 1000, code / 100 % 10, code % 100)
        };
        (v.major >= 1).then_some(v)
    }

    /// Parses the `x.y.z` that follows `NCCL version ` (suffixes such as
    /// `+cuda12.4` or `a` are ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let patch = digits.parse().ok()?;
        Some(Self::new(major, minor, patch))
    }

    fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for NcclVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Newest release whose hashing was checked against NCCL's source. The
/// tracer leaves the hash of newer releases unknown (null, counted as
/// `nccl_version_unsupported`) rather than guess.
pub const NEWEST_CHECKED: NcclVersion = NcclVersion::new(2, 30, 7);

/// NCCL ≤ 2.25 `getHash`: DJB2a, `h = h * 33 ^ c`, over `char`s.
pub fn djb2a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(5381u64, |h, &b| (h << 5).wrapping_add(h) ^ widen(b))
}

/// A byte as NCCL's `char` widens to 64 bits on the architecture it runs
/// on, which is this one: sign-extended on x86-64 (`char` is signed),
/// zero-extended on arm64 (unsigned).
fn widen(b: u8) -> u64 {
    b as std::ffi::c_char as i64 as u64
}

/// NCCL 2.26+ `eatHash`: folds `bytes` into the two-word accumulator, 8 bytes
/// (little-endian) at a time; the size is mixed in first.
fn eat(acc: &mut [u64; 2], bytes: &[u8]) {
    acc[0] ^= bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        acc[0] = acc[0].wrapping_add(acc[1]);
        acc[1] ^= acc[0];
        acc[0] ^= acc[0] >> 31;
        acc[0] = acc[0].wrapping_mul(0x9de6_2bbc_8cef_3ce3);
        acc[1] ^= acc[1] >> 32;
        acc[1] = acc[1].wrapping_mul(0x485c_d631_1b59_9e79);
        let mut x = [0u8; 8];
        x[..chunk.len()].copy_from_slice(chunk);
        acc[0] = acc[0].wrapping_add(u64::from_le_bytes(x));
    }
}

/// NCCL 2.26+ `digestHash`.
fn digest(acc: &[u64; 2]) -> u64 {
    let mut h = acc[0];
    h ^= h >> 31;
    h = h.wrapping_mul(0xbac3_bd56_2846_de6b);
    h = h.wrapping_add(acc[1]);
    h ^= h >> 32;
    h.wrapping_mul(0x995a_187a_14e7_b445)
}

/// NCCL 2.26+ `getHash(bytes, size)`.
pub fn mix_hash(bytes: &[u8]) -> u64 {
    let mut acc = [1u64, 1u64];
    eat(&mut acc, bytes);
    digest(&acc)
}

/// NCCL 2.16–2.25 `hashUniqueId`: the value those versions print as
/// `commId 0x…` with `NCCL_DEBUG=INFO` (not the commHash).
pub fn hash_unique_id(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xdead_beefu64, |mut h, &b| {
        h ^= h >> 32;
        h = h.wrapping_mul(0x8db3_db47_fa29_94ad);
        h.wrapping_add(widen(b))
    })
}

/// commHash of a communicator created from `unique_id` (ncclCommInitRank,
/// ncclCommInitRankConfig, ncclCommInitAll) by NCCL `version`.
pub fn comm_hash(version: NcclVersion, unique_id: &[u8; UNIQUE_ID_BYTES]) -> u64 {
    if version.at_least(2, 26) { mix_hash(unique_id) } else { djb2a(unique_id) }
}

/// commHash of the child that `ncclCommSplit` creates, or `None` where NCCL
/// has no split (before 2.18). `split_count` is the parent's split counter
/// after this split (1 for the first split of that parent).
pub fn split_hash(version: NcclVersion, parent_hash: u64, split_count: u32, color: i32) -> Option<u64> {
    if !version.at_least(2, 18) {
        return None;
    }
    if version.at_least(2, 26) {
        let mut acc = [1u64, 1u64];
        eat(&mut acc, &parent_hash.to_le_bytes());
        eat(&mut acc, &(split_count as i32).to_le_bytes());
        eat(&mut acc, &color.to_le_bytes());
        return Some(digest(&acc));
    }
    let text = if version.at_least(2, 24) {
        format!("{parent_hash:016x}-{}-{color}", split_count as i32)
    } else {
        format!("{parent_hash:016x}-{color}")
    };
    // snprintf into a zeroed 128-byte id: at most 127 characters and a NUL.
    let mut id = [0u8; UNIQUE_ID_BYTES];
    let n = text.len().min(UNIQUE_ID_BYTES - 1);
    id[..n].copy_from_slice(&text.as_bytes()[..n]);
    Some(djb2a(&id))
}

/// The `commId 0x…` that NCCL `version` prints at `Init START`/`Init COMPLETE`
/// for a communicator created from `unique_id`: the commHash from 2.26 on,
/// `hashUniqueId` of the id in 2.16–2.25, nothing before 2.16.
pub fn printed_comm_id(version: NcclVersion, unique_id: &[u8; UNIQUE_ID_BYTES]) -> Option<u64> {
    if version.at_least(2, 26) {
        Some(comm_hash(version, unique_id))
    } else if version.at_least(2, 16) {
        Some(hash_unique_id(unique_id))
    } else {
        None
    }
}

/// `nccl_calls.op` of a probed entry point (the numbering of `enum nccl_op`
/// in `src/bpf/strand.h`); `None` for the bookkeeping probes.
pub fn op_name(op: u32) -> Option<&'static str> {
    Some(match op {
        1 => "allreduce",
        2 | 3 => "broadcast", // ncclBroadcast, ncclBcast
        4 => "reduce",
        5 => "allgather",
        6 => "reducescatter",
        7 => "alltoall",
        8 => "send",
        9 => "recv",
        10 => "group_start",
        11 => "group_end",
        12 | 13 => "comm_init_rank", // ncclCommInitRank, ncclCommInitRankConfig
        14 => "comm_init_all",
        15 => "comm_split",
        16 => "comm_destroy",
        17 => "comm_abort",
        _ => return None,
    })
}

/// Name and size in bytes of an `ncclDataType_t` (NCCL 2.24+ adds the fp8 types).
pub fn datatype(dt: i32) -> Option<(&'static str, i64)> {
    Some(match dt {
        0 => ("int8", 1),
        1 => ("uint8", 1),
        2 => ("int32", 4),
        3 => ("uint32", 4),
        4 => ("int64", 8),
        5 => ("uint64", 8),
        6 => ("float16", 2),
        7 => ("float32", 4),
        8 => ("float64", 8),
        9 => ("bfloat16", 2),
        10 => ("float8e4m3", 1),
        11 => ("float8e5m2", 1),
        _ => return None,
    })
}

/// Name of an `ncclRedOp_t`. Values from `ncclNumOps` (5) up are created at
/// run time, and only `ncclRedOpCreatePreMulSum` creates them.
pub fn redop(op: i32) -> Option<&'static str> {
    Some(match op {
        0 => "sum",
        1 => "prod",
        2 => "max",
        3 => "min",
        4 => "avg",
        5..=i32::MAX => "premulsum",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_codes_decode_both_encodings() {
        assert_eq!(NcclVersion::from_code(2708), Some(NcclVersion::new(2, 7, 8)));
        assert_eq!(NcclVersion::from_code(22105), Some(NcclVersion::new(2, 21, 5)));
        assert_eq!(NcclVersion::from_code(22803), Some(NcclVersion::new(2, 28, 3)));
        assert_eq!(NcclVersion::from_code(0), None);
        assert_eq!(NcclVersion::parse("2.21.5+cuda12.4"), Some(NcclVersion::new(2, 21, 5)));
        assert_eq!(NcclVersion::parse("2.28.3a"), Some(NcclVersion::new(2, 28, 3)));
        assert_eq!(NcclVersion::parse("2.x.3"), None);
    }

    #[test]
    fn djb2a_widens_high_bytes_as_char_does() {
        // 5381*33 ^ 'a'
        assert_eq!(djb2a(b"a"), (5381u64 * 33) ^ 0x61);
        // 0xff is char -1 on x86-64: xor with all ones; 255 on arm64.
        let ff = if cfg!(target_arch = "aarch64") { 0xff } else { u64::MAX };
        assert_eq!(djb2a(&[0xff]), (5381u64 * 33) ^ ff);
    }

    #[test]
    fn mix_hash_eats_partial_chunks_zero_padded() {
        // 3 bytes hash like the same 3 bytes: padding is not data.
        assert_eq!(mix_hash(&[1, 2, 3]), mix_hash(&[1, 2, 3]));
        assert_ne!(mix_hash(&[1, 2, 3]), mix_hash(&[1, 2, 3, 0]), "size is mixed in");
    }

    #[test]
    fn split_formats_follow_the_release() {
        let v22 = NcclVersion::new(2, 22, 3);
        let v24 = NcclVersion::new(2, 24, 3);
        let mut id = [0u8; UNIQUE_ID_BYTES];
        id[..18].copy_from_slice(b"00000000000000ab-1");
        assert_eq!(split_hash(v22, 0xab, 5, 1), Some(djb2a(&id)), "2.18-2.23 ignore the count");
        let mut id = [0u8; UNIQUE_ID_BYTES];
        id[..20].copy_from_slice(b"00000000000000ab-2-1");
        assert_eq!(split_hash(v24, 0xab, 2, 1), Some(djb2a(&id)));
        assert_eq!(split_hash(NcclVersion::new(2, 17, 1), 0xab, 1, 1), None);
        let v28 = NcclVersion::new(2, 28, 3);
        assert_ne!(split_hash(v28, 0xab, 1, 1), split_hash(v28, 0xab, 2, 1));
    }

    /// Id A: byte i is `i * 37 + 11`. Id B: what `ncclGetUniqueId` returns
    /// with `NCCL_COMM_ID=127.0.0.1:12345` (NCCL_MAGIC, then a sockaddr_in).
    fn id_a() -> [u8; UNIQUE_ID_BYTES] {
        std::array::from_fn(|i| (i * 37 + 11) as u8)
    }
    fn id_b() -> [u8; UNIQUE_ID_BYTES] {
        let mut id = [0u8; UNIQUE_ID_BYTES];
        id[..8].copy_from_slice(&0x0280_0280_0280_0280u64.to_le_bytes());
        id[8..16].copy_from_slice(&[2, 0, 0x30, 0x39, 127, 0, 0, 1]);
        id
    }

    /// Known answers printed by NCCL's own hash functions: `getHash`,
    /// `eatHash`/`digestHash` from `src/include/bitops.h` of v2.28.3-1, the
    /// DJB2a `getHash` of v2.25.1-1 and `hashUniqueId` of its `src/init.cc`,
    /// compiled unchanged with g++ on x86-64 (not NCCL's binary: that needs a GPU,
    /// see bench/gpu/).
    #[test]
    #[cfg_attr(not(target_arch = "x86_64"), ignore = "the DJB2a answers are x86-64's, where char is signed")]
    fn known_answers_from_nccl_source() {
        let (v25, v28) = (NcclVersion::new(2, 25, 1), NcclVersion::new(2, 28, 3));
        assert_eq!(comm_hash(v28, &id_a()), 0x3002_dcd1_bbe6_653d);
        assert_eq!(comm_hash(v25, &id_a()), 0x65bb_3b0c_ba52_7185);
        assert_eq!(hash_unique_id(&id_a()), 0xae36_3208_2b38_c8d3);
        assert_eq!(comm_hash(v28, &id_b()), 0x8f7b_8547_15d9_b257);
        assert_eq!(comm_hash(v25, &id_b()), 0xa335_1ab3_d15e_8610);
        assert_eq!(hash_unique_id(&id_b()), 0xfbae_0b4a_07b7_357d);
        assert_eq!(split_hash(v28, comm_hash(v28, &id_a()), 1, 0), Some(0x8c3f_7f65_98a0_2235));
        let parent = comm_hash(v25, &id_a());
        assert_eq!(split_hash(NcclVersion::new(2, 24, 3), parent, 2, 1), Some(0xabaf_5ec3_361e_1928));
        assert_eq!(split_hash(NcclVersion::new(2, 19, 3), parent, 7, 1), Some(0xdf1f_0c73_b1bc_7397));
        assert_eq!(printed_comm_id(v28, &id_b()), Some(0x8f7b_8547_15d9_b257));
        assert_eq!(printed_comm_id(v25, &id_b()), Some(0xfbae_0b4a_07b7_357d));
        assert_eq!(printed_comm_id(NcclVersion::new(2, 14, 3), &id_b()), None);
    }

    #[test]
    fn names() {
        assert_eq!(op_name(3), Some("broadcast"));
        assert_eq!(op_name(18), None);
        assert_eq!(datatype(9), Some(("bfloat16", 2)));
        assert_eq!(datatype(12), None);
        assert_eq!(redop(4), Some("avg"));
        assert_eq!(redop(17), Some("premulsum"));
        assert_eq!(redop(-1), None);
    }
}
