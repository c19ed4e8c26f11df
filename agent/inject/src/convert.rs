//! CUPTI activity record → wire record: a pure function of the record's
//! bytes and the [`Layout`] of the running CUPTI release.
//!
//! Pointers inside records (kernel and device names) and API function names
//! belong to CUPTI; a [`Resolve`] reads them, so tests can supply their own.

use std::collections::HashMap;
use std::fmt;

use crate::layout::{Layout, kind};
use crate::wire::{self, Activity, MAX_NAME_BYTES, MAX_NAME_LEN, MAX_NAMES};

/// What a record's bytes alone cannot tell.
pub trait Resolve {
    /// The NUL-terminated string at address `ptr` (without the NUL), cut at
    /// [`MAX_NAME_LEN`] bytes; `None` for a null pointer.
    fn c_string(&self, ptr: u64) -> Option<&[u8]>;
    /// The name of API function `cbid` of `domain` (`wire::domain`).
    fn api_name(&self, domain: u8, cbid: u32) -> Option<Vec<u8>>;
}

/// A record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub kind: u32,
    pub need: usize,
    pub have: usize,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "activity record of kind {} needs {} bytes but only {} remain in the buffer",
            self.kind, self.need, self.have
        )
    }
}

impl std::error::Error for ConvertError {}

/// Gives each distinct name a small id, once per process. Bounded like the
/// receiving side ([`MAX_NAMES`], [`MAX_NAME_BYTES`]); beyond it names get
/// id 0 ("unknown") and are counted.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Box<[u8]>, u32>,
    new: Vec<(u32, Box<[u8]>)>,
    bytes: usize,
    /// Names refused because a limit was reached.
    pub overflow: u64,
}

impl Interner {
    pub fn intern(&mut self, name: &[u8]) -> u32 {
        let name = &name[..name.len().min(MAX_NAME_LEN)];
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        if self.ids.len() >= MAX_NAMES || self.bytes + name.len() > MAX_NAME_BYTES {
            self.overflow += 1;
            return 0;
        }
        let id = self.ids.len() as u32 + 1;
        self.bytes += name.len();
        self.ids.insert(name.into(), id);
        self.new.push((id, name.into()));
        id
    }

    /// Names interned since the last call, to send with the records using them.
    pub fn take_new(&mut self) -> Vec<(u32, Box<[u8]>)> {
        std::mem::take(&mut self.new)
    }
}

/// Converts the records of one CUPTI release.
#[derive(Debug)]
pub struct Converter {
    layout: &'static Layout,
    pub names: Interner,
    api_names: HashMap<(u8, u32), u32>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

impl Converter {
    pub fn new(layout: &'static Layout) -> Self {
        Self { layout, names: Interner::default(), api_names: HashMap::new() }
    }

    pub fn layout(&self) -> &'static Layout {
        self.layout
    }

    /// Converts the record that starts at `record[0]`; `record` runs to the end
    /// of the buffer's valid bytes. `Ok(None)` for kinds the library does not
    /// forward.
    pub fn convert(&mut self, record: &[u8], res: &impl Resolve) -> Result<Option<Activity>, ConvertError> {
        if record.len() < 4 {
            return Err(ConvertError { kind: 0, need: 4, have: record.len() });
        }
        let k = u32_at(record, 0);
        let need = match k {
            kind::KERNEL | kind::CONCURRENT_KERNEL => self.layout.kernel.need,
            kind::MEMCPY => self.layout.memcpy.need,
            kind::MEMSET => self.layout.memset.need,
            kind::SYNCHRONIZATION => self.layout.sync.need,
            kind::DRIVER | kind::RUNTIME => self.layout.api.need,
            kind::DEVICE => self.layout.device.need,
            _ => return Ok(None),
        };
        if record.len() < need {
            return Err(ConvertError { kind: k, need, have: record.len() });
        }
        let b = record;
        let l = self.layout;
        Ok(Some(match k {
            kind::KERNEL | kind::CONCURRENT_KERNEL => {
                let f = &l.kernel;
                let name = res.c_string(u64_at(b, f.name)).map_or(0, |n| self.names.intern(n));
                Activity::Kernel(wire::Kernel {
                    start: u64_at(b, f.start),
                    end: u64_at(b, f.end),
                    correlation_id: u32_at(b, f.correlation_id),
                    device_id: u32_at(b, f.device_id),
                    context_id: u32_at(b, f.context_id),
                    stream_id: u32_at(b, f.stream_id),
                    name,
                    grid: f.grid.map(|o| u32_at(b, o) as i32),
                    block: f.block.map(|o| u32_at(b, o) as i32),
                })
            }
            kind::MEMCPY => {
                let f = &l.memcpy;
                Activity::Memcpy(wire::Memcpy {
                    start: u64_at(b, f.start),
                    end: u64_at(b, f.end),
                    correlation_id: u32_at(b, f.correlation_id),
                    device_id: u32_at(b, f.device_id),
                    context_id: u32_at(b, f.context_id),
                    stream_id: u32_at(b, f.stream_id),
                    bytes: u64_at(b, f.bytes),
                    copy_kind: b[f.copy_kind],
                    src_kind: b[f.src_kind],
                    dst_kind: b[f.dst_kind],
                    flags: b[f.flags],
                })
            }
            kind::MEMSET => {
                let f = &l.memset;
                Activity::Memset(wire::Memset {
                    start: u64_at(b, f.start),
                    end: u64_at(b, f.end),
                    correlation_id: u32_at(b, f.correlation_id),
                    device_id: u32_at(b, f.device_id),
                    context_id: u32_at(b, f.context_id),
                    stream_id: u32_at(b, f.stream_id),
                    bytes: u64_at(b, f.bytes),
                    value: u32_at(b, f.value),
                    memory_kind: u16_at(b, f.memory_kind),
                })
            }
            kind::SYNCHRONIZATION => {
                let f = &l.sync;
                Activity::Sync(wire::Sync {
                    start: u64_at(b, f.start),
                    end: u64_at(b, f.end),
                    correlation_id: u32_at(b, f.correlation_id),
                    context_id: u32_at(b, f.context_id),
                    stream_id: u32_at(b, f.stream_id),
                    sync_type: u32_at(b, f.sync_type),
                    event_id: u32_at(b, f.cuda_event_id),
                    ret: f.return_value.map(|o| u32_at(b, o)),
                })
            }
            kind::DRIVER | kind::RUNTIME => {
                let f = &l.api;
                let domain = if k == kind::DRIVER { wire::domain::DRIVER } else { wire::domain::RUNTIME };
                let cbid = u32_at(b, f.cbid);
                let name = match self.api_names.get(&(domain, cbid)) {
                    Some(id) => *id,
                    None => {
                        let id = res.api_name(domain, cbid).map_or(0, |n| self.names.intern(&n));
                        self.api_names.insert((domain, cbid), id);
                        id
                    }
                };
                Activity::Api(wire::Api {
                    start: u64_at(b, f.start),
                    end: u64_at(b, f.end),
                    correlation_id: u32_at(b, f.correlation_id),
                    thread_id: u32_at(b, f.thread_id),
                    domain,
                    cbid,
                    name,
                    ret: u32_at(b, f.return_value),
                })
            }
            _ => {
                let f = &l.device;
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(&b[f.uuid..f.uuid + 16]);
                let name = res.c_string(u64_at(b, f.name)).map_or(0, |n| self.names.intern(n));
                Activity::Device(wire::Device { id: u32_at(b, f.id), uuid, name })
            }
        }))
    }
}

/// A CUPTI activity buffer built from record structs, for tests and the
/// GPU-less end-to-end checks: records back to back, as CUPTI writes them.
#[derive(Debug, Default, Clone)]
pub struct SyntheticBuffer {
    pub bytes: Vec<u8>,
    /// Offset of each record, in order (what `cuptiActivityGetNextRecord` walks).
    pub offsets: Vec<usize>,
}

impl SyntheticBuffer {
    pub fn push<T: Copy + crate::layout::RecordStruct>(&mut self, record: &T) -> &mut Self {
        self.offsets.push(self.bytes.len());
        self.bytes.extend_from_slice(crate::layout::bytes_of(record));
        self
    }

    /// Each record's bytes to the end of the buffer, as the converter sees them.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.offsets.iter().map(|o| &self.bytes[*o..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{self, *};
    use crate::wire::domain;

    /// Resolves names from a table keyed by fake pointer values.
    struct Table(Vec<(u64, &'static [u8])>);

    impl Resolve for Table {
        fn c_string(&self, ptr: u64) -> Option<&[u8]> {
            self.0.iter().find(|(p, _)| *p == ptr).map(|(_, n)| *n)
        }
        fn api_name(&self, domain: u8, cbid: u32) -> Option<Vec<u8>> {
            match (domain, cbid) {
                (domain::RUNTIME, 211) => Some(b"cudaLaunchKernel_v7000".to_vec()),
                (domain::DRIVER, 307) => Some(b"cuLaunchKernel".to_vec()),
                _ => None,
            }
        }
    }

    const GEMM: &[u8] = b"_Z19sm90_xmma_gemm_bf16PKvS0_Pv";
    const NCCL: &[u8] = b"ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)";

    fn names() -> Table {
        Table(vec![(0x1000, GEMM), (0x2000, NCCL), (0x3000, b"NVIDIA H100 80GB HBM3")])
    }

    macro_rules! kernel {
        ($t:ident, $corr:expr, $name:expr) => {
            $t {
                kind: kind::CONCURRENT_KERNEL,
                start: 1_000_000 + $corr as u64,
                end: 2_000_000 + $corr as u64,
                device_id: 1,
                context_id: 2,
                stream_id: 7,
                grid_x: 132,
                grid_y: 2,
                grid_z: 1,
                block_x: 384,
                block_y: 1,
                block_z: 1,
                correlation_id: $corr,
                name: $name,
                // Fields the converter does not read get non-zero values so a
                // wrong offset shows up as a wrong value.
                completed: u64::MAX,
                static_shared_memory: -1,
                local_memory_total: 0xdead,
                grid_id: -1,
                ..Default::default()
            }
        };
    }

    macro_rules! memcpy {
        ($t:ident) => {
            $t {
                kind: kind::MEMCPY,
                copy_kind: 1,
                src_kind: 1,
                dst_kind: 3,
                flags: 1,
                bytes: 64 << 20,
                start: 3_000_000,
                end: 3_500_000,
                device_id: 1,
                context_id: 2,
                stream_id: 7,
                correlation_id: 42,
                runtime_correlation_id: 0xffff_ffff,
                graph_id: 0xffff,
                ..Default::default()
            }
        };
    }

    macro_rules! memset {
        ($t:ident) => {
            $t {
                kind: kind::MEMSET,
                value: 0,
                bytes: 4096,
                start: 4_000_000,
                end: 4_000_800,
                device_id: 1,
                context_id: 2,
                stream_id: 7,
                correlation_id: 43,
                flags: 0xffff,
                memory_kind: 3,
                pad: 0xffff_ffff,
                ..Default::default()
            }
        };
    }

    macro_rules! device {
        ($t:ident) => {
            $t {
                kind: kind::DEVICE,
                id: 1,
                uuid: Uuid(*b"\x9a\x1b\x2c\x3d\x4e\x5f\x60\x71\x82\x93\xa4\xb5\xc6\xd7\xe8\xf9"),
                name: 0x3000,
                compute_capability_major: 9,
                ecc_enabled: 0xffff_ffff,
                is_mig_enabled: 1,
                ..Default::default()
            }
        };
    }

    fn api(kind: u32, cbid: u32, corr: u32) -> Api {
        Api {
            kind,
            cbid,
            start: 900_000,
            end: 950_000,
            process_id: 4000,
            thread_id: 4001,
            correlation_id: corr,
            return_value: 0,
        }
    }

    /// One buffer of every kind with `layout`'s structs, converted and checked
    /// field by field.
    fn check(layout: &'static Layout, buf: &SyntheticBuffer) {
        let mut c = Converter::new(layout);
        let out: Vec<Activity> = buf.records().map(|r| c.convert(r, &names()).unwrap().unwrap()).collect();
        let kernel = |corr: u32, name: u32| {
            Activity::Kernel(wire::Kernel {
                start: 1_000_000 + corr as u64,
                end: 2_000_000 + corr as u64,
                correlation_id: corr,
                device_id: 1,
                context_id: 2,
                stream_id: 7,
                name,
                grid: [132, 2, 1],
                block: [384, 1, 1],
            })
        };
        let sync_ret = layout.sync.return_value.map(|_| 700);
        assert_eq!(
            out,
            vec![
                Activity::Device(wire::Device {
                    id: 1,
                    uuid: *b"\x9a\x1b\x2c\x3d\x4e\x5f\x60\x71\x82\x93\xa4\xb5\xc6\xd7\xe8\xf9",
                    name: 1
                }),
                Activity::Api(wire::Api {
                    start: 900_000,
                    end: 950_000,
                    correlation_id: 40,
                    thread_id: 4001,
                    domain: domain::RUNTIME,
                    cbid: 211,
                    name: 2,
                    ret: 0
                }),
                kernel(40, 3),
                Activity::Api(wire::Api {
                    start: 900_000,
                    end: 950_000,
                    correlation_id: 41,
                    thread_id: 4001,
                    domain: domain::DRIVER,
                    cbid: 307,
                    name: 4,
                    ret: 0
                }),
                kernel(41, 5),
                kernel(44, 3),
                Activity::Memcpy(wire::Memcpy {
                    start: 3_000_000,
                    end: 3_500_000,
                    correlation_id: 42,
                    device_id: 1,
                    context_id: 2,
                    stream_id: 7,
                    bytes: 64 << 20,
                    copy_kind: 1,
                    src_kind: 1,
                    dst_kind: 3,
                    flags: 1,
                }),
                Activity::Memset(wire::Memset {
                    start: 4_000_000,
                    end: 4_000_800,
                    correlation_id: 43,
                    device_id: 1,
                    context_id: 2,
                    stream_id: 7,
                    bytes: 4096,
                    value: 0,
                    memory_kind: 3,
                }),
                Activity::Sync(wire::Sync {
                    start: 5_000_000,
                    end: 5_900_000,
                    correlation_id: 45,
                    context_id: 2,
                    stream_id: 7,
                    sync_type: 3,
                    event_id: 0,
                    ret: sync_ret,
                }),
            ],
            "{}",
            layout.release
        );
        let new: Vec<(u32, Vec<u8>)> = c.names.take_new().into_iter().map(|(i, n)| (i, n.into_vec())).collect();
        assert_eq!(
            new,
            vec![
                (1, b"NVIDIA H100 80GB HBM3".to_vec()),
                (2, b"cudaLaunchKernel_v7000".to_vec()),
                (3, GEMM.to_vec()),
                (4, b"cuLaunchKernel".to_vec()),
                (5, NCCL.to_vec()),
            ],
            "each name once, in order of first use"
        );
        assert!(c.names.take_new().is_empty());
    }

    macro_rules! buffer {
        ($layout:expr, $k:ident, $mc:ident, $ms:ident, $dev:ident, $sync:expr) => {{
            let mut b = SyntheticBuffer::default();
            b.push(&device!($dev))
                .push(&api(kind::RUNTIME, 211, 40))
                .push(&kernel!($k, 40, 0x1000))
                .push(&api(kind::DRIVER, 307, 41))
                .push(&kernel!($k, 41, 0x2000))
                .push(&{
                    let mut k = kernel!($k, 44, 0x1000);
                    k.kind = kind::KERNEL;
                    k
                })
                .push(&memcpy!($mc))
                .push(&memset!($ms));
            $sync(&mut b);
            check($layout, &b);
        }};
    }

    fn sync1(b: &mut SyntheticBuffer) {
        b.push(&Synchronization {
            kind: kind::SYNCHRONIZATION,
            sync_type: 3,
            start: 5_000_000,
            end: 5_900_000,
            correlation_id: 45,
            context_id: 2,
            stream_id: 7,
            cuda_event_id: 0,
        });
    }

    fn sync2(b: &mut SyntheticBuffer) {
        b.push(&Synchronization2 {
            kind: kind::SYNCHRONIZATION,
            sync_type: 3,
            start: 5_000_000,
            end: 5_900_000,
            correlation_id: 45,
            context_id: 2,
            stream_id: 7,
            cuda_event_id: 0,
            cuda_event_sync_id: u64::MAX,
            return_value: 700,
            pad: 0xffff_ffff,
        });
    }

    #[test]
    fn cuda_12_0_records_convert() {
        buffer!(&layout::CUDA_12_0, Kernel9, Memcpy5, Memset4, Device4, sync1);
    }

    #[test]
    fn cuda_12_2_records_convert() {
        buffer!(&layout::CUDA_12_2, Kernel9, Memcpy5, Memset4, Device5, sync1);
    }

    #[test]
    fn cuda_12_8_records_convert() {
        buffer!(&layout::CUDA_12_8, Kernel9, Memcpy6V12, Memset4, Device5, sync2);
    }

    #[test]
    fn cuda_13_0_records_convert() {
        buffer!(&layout::CUDA_13_0, Kernel10, Memcpy6, Memset4, Device5, sync2);
    }

    #[test]
    fn cuda_13_1_records_convert() {
        buffer!(&layout::CUDA_13_1, Kernel11, Memcpy6, Memset4, Device5, sync2);
    }

    #[test]
    fn cuda_13_2_records_convert() {
        buffer!(&layout::CUDA_13_2, Kernel11, Memcpy6, Memset4, Device6, sync2);
    }

    #[test]
    fn cuda_13_3_records_convert() {
        buffer!(&layout::CUDA_13_3, Kernel12, Memcpy6, Memset4, Device6, sync2);
    }

    #[test]
    fn cuda_13_4_records_convert() {
        buffer!(&layout::CUDA_13_4, Kernel13, Memcpy7, Memset5, Device6, sync2);
    }

    #[test]
    fn a_record_cut_short_is_an_error_and_other_kinds_are_skipped() {
        let mut b = SyntheticBuffer::default();
        b.push(&kernel!(Kernel9, 1, 0x1000));
        let mut c = Converter::new(&layout::CUDA_12_2);
        let e = c.convert(&b.bytes[..100], &names()).unwrap_err();
        assert_eq!(e, ConvertError { kind: kind::CONCURRENT_KERNEL, need: 112, have: 100 });
        assert!(e.to_string().contains("needs 112 bytes"));
        assert!(c.convert(&b.bytes[..2], &names()).is_err());
        let mut other = b.bytes.clone();
        other[0] = 17; // CUPTI_ACTIVITY_KIND_OVERHEAD
        assert_eq!(c.convert(&other, &names()), Ok(None));
        // Null name pointer: the record stays, with name id 0.
        let mut b = SyntheticBuffer::default();
        b.push(&kernel!(Kernel9, 1, 0));
        let Some(Activity::Kernel(k)) = c.convert(&b.bytes, &names()).unwrap() else { panic!() };
        assert_eq!(k.name, 0);
    }

    #[test]
    fn the_interner_is_bounded() {
        let mut i = Interner::default();
        assert_eq!(i.intern(b"a"), 1);
        assert_eq!(i.intern(b"a"), 1);
        for n in 0..MAX_NAMES as u32 + 10 {
            i.intern(&n.to_le_bytes());
        }
        assert_eq!(i.overflow, 11, "'a' plus MAX_NAMES - 1 numbers fit");
        assert_eq!(i.intern(b"zz"), 0);
        assert_eq!(i.intern(b"a"), 1, "known names keep their id");
        assert_eq!(i.take_new().len(), MAX_NAMES);
    }
}
