//! CUPTI activity record layouts, per CUPTI release.
//!
//! CUPTI writes, for each activity kind, the newest record struct of its own
//! release (`CUpti_ActivityKernel9` in 12.x, `…Kernel10` in 13.0, …). The
//! structs below restate the headers' layouts field for field (CUPTI's
//! `PACKED_ALIGNMENT` structs are explicitly padded, so `repr(C, align(8))`
//! gives the same offsets); tests check every offset and size against the
//! header values and, where `cudarc` has the struct, against its bindings.
//!
//! The decoder reads a record through a [`Layout`] chosen at run time from
//! `cuptiGetVersion`: field offsets and the number of bytes it needs, so one
//! pure function serves every supported release.

use std::mem::{offset_of, size_of};

/// `CUpti_ActivityKind` values the library enables or reads.
pub mod kind {
    pub const MEMCPY: u32 = 1;
    pub const MEMSET: u32 = 2;
    pub const KERNEL: u32 = 3;
    pub const DRIVER: u32 = 4;
    pub const RUNTIME: u32 = 5;
    pub const DEVICE: u32 = 8;
    pub const CONCURRENT_KERNEL: u32 = 10;
    pub const SYNCHRONIZATION: u32 = 38;
}

/// `CUuuid`: 16 raw bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uuid(pub [u8; 16]);

macro_rules! kernel_struct {
    ($(#[$m:meta])* $name:ident { $($extra:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C, align(8))]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name {
            pub kind: u32,
            pub cache_config: u8,
            pub shared_memory_config: u8,
            pub registers_per_thread: u16,
            pub partitioned_global_cache_requested: u32,
            pub partitioned_global_cache_executed: u32,
            pub start: u64,
            pub end: u64,
            pub completed: u64,
            pub device_id: u32,
            pub context_id: u32,
            pub stream_id: u32,
            pub grid_x: i32,
            pub grid_y: i32,
            pub grid_z: i32,
            pub block_x: i32,
            pub block_y: i32,
            pub block_z: i32,
            pub static_shared_memory: i32,
            pub dynamic_shared_memory: i32,
            pub local_memory_per_thread: u32,
            pub local_memory_total: u32,
            pub correlation_id: u32,
            pub grid_id: i64,
            pub name: u64,
            pub reserved0: u64,
            pub queued: u64,
            pub submitted: u64,
            pub launch_type: u8,
            pub is_shared_memory_carveout_requested: u8,
            pub shared_memory_carveout_requested: u8,
            pub padding: u8,
            pub shared_memory_executed: u32,
            pub graph_node_id: u64,
            pub shmem_limit_config: u32,
            pub graph_id: u32,
            pub access_policy_window: u64,
            pub channel_id: u32,
            pub channel_type: u32,
            pub cluster_x: u32,
            pub cluster_y: u32,
            pub cluster_z: u32,
            pub cluster_scheduling_policy: u32,
            pub local_memory_total_v2: u64,
            pub max_potential_cluster_size: u32,
            pub max_active_clusters: u32,
            $(pub $extra: $ty,)*
        }
    };
}

kernel_struct!(
    /// `CUpti_ActivityKernel9` (CUDA 12.0–12.9).
    Kernel9 {}
);
kernel_struct!(
    /// `CUpti_ActivityKernel10` (CUDA 13.0): adds `isDeviceLaunched`.
    Kernel10 { is_device_launched: u8, padding3: [u8; 7] }
);
kernel_struct!(
    /// `CUpti_ActivityKernel11` (CUDA 13.1–13.2): adds `priority`.
    Kernel11 { is_device_launched: u8, padding3: [u8; 7], priority: i32, padding4: u32 }
);
kernel_struct!(
    /// `CUpti_ActivityKernel12` (CUDA 13.3): adds `executionModel`.
    Kernel12 { is_device_launched: u8, padding3: [u8; 7], priority: i32, padding4: u32, execution_model: u32, padding5: u32 }
);
kernel_struct!(
    /// `CUpti_ActivityKernel13` (CUDA 13.4): adds the source graph ids.
    Kernel13 {
        is_device_launched: u8,
        padding3: [u8; 7],
        priority: i32,
        padding4: u32,
        execution_model: u32,
        padding5: u32,
        source_graph_id: u32,
        padding6: u32,
        source_graph_node_id: u64,
    }
);

macro_rules! memcpy_struct {
    ($(#[$m:meta])* $name:ident { $($extra:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C, align(8))]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name {
            pub kind: u32,
            pub copy_kind: u8,
            pub src_kind: u8,
            pub dst_kind: u8,
            pub flags: u8,
            pub bytes: u64,
            pub start: u64,
            pub end: u64,
            pub device_id: u32,
            pub context_id: u32,
            pub stream_id: u32,
            pub correlation_id: u32,
            pub runtime_correlation_id: u32,
            pub pad: u32,
            pub reserved0: u64,
            pub graph_node_id: u64,
            pub graph_id: u32,
            pub channel_id: u32,
            pub channel_type: u32,
            $(pub $extra: $ty,)*
        }
    };
}

memcpy_struct!(
    /// `CUpti_ActivityMemcpy5` (CUDA 12.0–12.6).
    Memcpy5 { pad2: u32 }
);
memcpy_struct!(
    /// `CUpti_ActivityMemcpy6` as in CUDA 12.8–12.9: adds `copyCount`.
    Memcpy6V12 { pad2: u32, copy_count: u64 }
);
memcpy_struct!(
    /// `CUpti_ActivityMemcpy6` as in CUDA 13.0–13.3: `isDeviceLaunched` takes a byte of `pad2`.
    Memcpy6 { is_device_launched: u8, pad2: [u8; 3], copy_count: u64 }
);
memcpy_struct!(
    /// `CUpti_ActivityMemcpy7` (CUDA 13.4): adds the source graph ids.
    Memcpy7 { is_device_launched: u8, pad2: [u8; 3], copy_count: u64, source_graph_id: u32, pad3: u32, source_graph_node_id: u64 }
);

macro_rules! memset_struct {
    ($(#[$m:meta])* $name:ident { $($extra:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C, align(8))]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name {
            pub kind: u32,
            pub value: u32,
            pub bytes: u64,
            pub start: u64,
            pub end: u64,
            pub device_id: u32,
            pub context_id: u32,
            pub stream_id: u32,
            pub correlation_id: u32,
            pub flags: u16,
            pub memory_kind: u16,
            pub pad: u32,
            pub reserved0: u64,
            pub graph_node_id: u64,
            pub graph_id: u32,
            pub channel_id: u32,
            pub channel_type: u32,
            $(pub $extra: $ty,)*
        }
    };
}

memset_struct!(
    /// `CUpti_ActivityMemset4` (CUDA 12.0–13.3; 13.0 names a byte of `pad2` `isDeviceLaunched`).
    Memset4 { pad2: u32 }
);
memset_struct!(
    /// `CUpti_ActivityMemset5` (CUDA 13.4): adds the source graph ids.
    Memset5 { is_device_launched: u8, pad2: [u8; 3], source_graph_id: u32, pad3: u32, source_graph_node_id: u64 }
);

/// `CUpti_ActivitySynchronization` (CUDA 12.0–12.6).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Synchronization {
    pub kind: u32,
    pub sync_type: u32,
    pub start: u64,
    pub end: u64,
    pub correlation_id: u32,
    pub context_id: u32,
    pub stream_id: u32,
    pub cuda_event_id: u32,
}

/// `CUpti_ActivitySynchronization2` (CUDA 12.8 on): adds the event sync id and the return value.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Synchronization2 {
    pub kind: u32,
    pub sync_type: u32,
    pub start: u64,
    pub end: u64,
    pub correlation_id: u32,
    pub context_id: u32,
    pub stream_id: u32,
    pub cuda_event_id: u32,
    pub cuda_event_sync_id: u64,
    pub return_value: u32,
    pub pad: u32,
}

/// `CUpti_ActivityAPI` (driver and runtime API calls; unchanged since CUDA 5).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Api {
    pub kind: u32,
    pub cbid: u32,
    pub start: u64,
    pub end: u64,
    pub process_id: u32,
    pub thread_id: u32,
    pub correlation_id: u32,
    pub return_value: u32,
}

macro_rules! device_struct {
    ($(#[$m:meta])* $name:ident { $($extra:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C, align(8))]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name {
            pub kind: u32,
            pub flags: u32,
            pub global_memory_bandwidth: u64,
            pub global_memory_size: u64,
            pub constant_memory_size: u32,
            pub l2_cache_size: u32,
            pub num_threads_per_warp: u32,
            pub core_clock_rate: u32,
            pub num_memcpy_engines: u32,
            pub num_multiprocessors: u32,
            pub max_ipc: u32,
            pub max_warps_per_multiprocessor: u32,
            pub max_blocks_per_multiprocessor: u32,
            pub max_shared_memory_per_multiprocessor: u32,
            pub max_registers_per_multiprocessor: u32,
            pub max_registers_per_block: u32,
            pub max_shared_memory_per_block: u32,
            pub max_threads_per_block: u32,
            pub max_block_dim_x: u32,
            pub max_block_dim_y: u32,
            pub max_block_dim_z: u32,
            pub max_grid_dim_x: u32,
            pub max_grid_dim_y: u32,
            pub max_grid_dim_z: u32,
            pub compute_capability_major: u32,
            pub compute_capability_minor: u32,
            pub id: u32,
            pub ecc_enabled: u32,
            pub uuid: Uuid,
            pub name: u64,
            pub is_cuda_visible: u8,
            pub is_mig_enabled: u8,
            pub reserved: [u8; 6],
            pub gpu_instance_id: u32,
            pub compute_instance_id: u32,
            pub mig_uuid: Uuid,
            $(pub $extra: $ty,)*
        }
    };
}

device_struct!(
    /// `CUpti_ActivityDevice4` (CUDA 12.0–12.1).
    Device4 {}
);
device_struct!(
    /// `CUpti_ActivityDevice5` (CUDA 12.2–13.1): adds the NUMA fields.
    Device5 { is_numa_node: u32, numa_id: u32 }
);
device_struct!(
    /// `CUpti_ActivityDevice6` (CUDA 13.2 on): adds `numTpcs`.
    Device6 { is_numa_node: u32, numa_id: u32, num_tpcs: u32, reserved0: u32 }
);

/// Where one record kind keeps the fields the library reads. `need` is the
/// number of bytes a record must have for every read to be in bounds (the
/// record may be longer); `size` is the whole struct, for buffers built in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFields {
    pub struct_name: &'static str,
    pub size: usize,
    pub need: usize,
    pub start: usize,
    pub end: usize,
    pub device_id: usize,
    pub context_id: usize,
    pub stream_id: usize,
    pub grid: [usize; 3],
    pub block: [usize; 3],
    pub correlation_id: usize,
    pub name: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemcpyFields {
    pub struct_name: &'static str,
    pub size: usize,
    pub need: usize,
    pub copy_kind: usize,
    pub src_kind: usize,
    pub dst_kind: usize,
    pub flags: usize,
    pub bytes: usize,
    pub start: usize,
    pub end: usize,
    pub device_id: usize,
    pub context_id: usize,
    pub stream_id: usize,
    pub correlation_id: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemsetFields {
    pub struct_name: &'static str,
    pub size: usize,
    pub need: usize,
    pub value: usize,
    pub bytes: usize,
    pub start: usize,
    pub end: usize,
    pub device_id: usize,
    pub context_id: usize,
    pub stream_id: usize,
    pub correlation_id: usize,
    pub memory_kind: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncFields {
    pub struct_name: &'static str,
    pub size: usize,
    pub need: usize,
    pub sync_type: usize,
    pub start: usize,
    pub end: usize,
    pub correlation_id: usize,
    pub context_id: usize,
    pub stream_id: usize,
    pub cuda_event_id: usize,
    /// `returnValue`, only in `CUpti_ActivitySynchronization2`.
    pub return_value: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiFields {
    pub struct_name: &'static str,
    pub size: usize,
    pub need: usize,
    pub cbid: usize,
    pub start: usize,
    pub end: usize,
    pub process_id: usize,
    pub thread_id: usize,
    pub correlation_id: usize,
    pub return_value: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFields {
    pub struct_name: &'static str,
    pub size: usize,
    pub need: usize,
    pub id: usize,
    pub uuid: usize,
    pub name: usize,
}

/// The record layouts of one CUPTI release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Human-readable release range, e.g. `"12.8–12.9"`.
    pub release: &'static str,
    pub kernel: KernelFields,
    pub memcpy: MemcpyFields,
    pub memset: MemsetFields,
    pub sync: SyncFields,
    pub api: ApiFields,
    pub device: DeviceFields,
}

macro_rules! kernel_fields {
    ($t:ident) => {
        KernelFields {
            struct_name: concat!("CUpti_Activity", stringify!($t)),
            size: size_of::<$t>(),
            need: offset_of!($t, name) + 8,
            start: offset_of!($t, start),
            end: offset_of!($t, end),
            device_id: offset_of!($t, device_id),
            context_id: offset_of!($t, context_id),
            stream_id: offset_of!($t, stream_id),
            grid: [offset_of!($t, grid_x), offset_of!($t, grid_y), offset_of!($t, grid_z)],
            block: [offset_of!($t, block_x), offset_of!($t, block_y), offset_of!($t, block_z)],
            correlation_id: offset_of!($t, correlation_id),
            name: offset_of!($t, name),
        }
    };
}

macro_rules! memcpy_fields {
    ($t:ident, $cname:expr) => {
        MemcpyFields {
            struct_name: $cname,
            size: size_of::<$t>(),
            need: offset_of!($t, correlation_id) + 4,
            copy_kind: offset_of!($t, copy_kind),
            src_kind: offset_of!($t, src_kind),
            dst_kind: offset_of!($t, dst_kind),
            flags: offset_of!($t, flags),
            bytes: offset_of!($t, bytes),
            start: offset_of!($t, start),
            end: offset_of!($t, end),
            device_id: offset_of!($t, device_id),
            context_id: offset_of!($t, context_id),
            stream_id: offset_of!($t, stream_id),
            correlation_id: offset_of!($t, correlation_id),
        }
    };
}

macro_rules! memset_fields {
    ($t:ident) => {
        MemsetFields {
            struct_name: concat!("CUpti_Activity", stringify!($t)),
            size: size_of::<$t>(),
            need: offset_of!($t, memory_kind) + 2,
            value: offset_of!($t, value),
            bytes: offset_of!($t, bytes),
            start: offset_of!($t, start),
            end: offset_of!($t, end),
            device_id: offset_of!($t, device_id),
            context_id: offset_of!($t, context_id),
            stream_id: offset_of!($t, stream_id),
            correlation_id: offset_of!($t, correlation_id),
            memory_kind: offset_of!($t, memory_kind),
        }
    };
}

macro_rules! sync_fields {
    ($t:ident, $ret:expr) => {
        SyncFields {
            struct_name: concat!("CUpti_Activity", stringify!($t)),
            size: size_of::<$t>(),
            need: match $ret {
                Some(off) => off + 4,
                None => offset_of!($t, cuda_event_id) + 4,
            },
            sync_type: offset_of!($t, sync_type),
            start: offset_of!($t, start),
            end: offset_of!($t, end),
            correlation_id: offset_of!($t, correlation_id),
            context_id: offset_of!($t, context_id),
            stream_id: offset_of!($t, stream_id),
            cuda_event_id: offset_of!($t, cuda_event_id),
            return_value: $ret,
        }
    };
}

macro_rules! device_fields {
    ($t:ident) => {
        DeviceFields {
            struct_name: concat!("CUpti_Activity", stringify!($t)),
            size: size_of::<$t>(),
            need: offset_of!($t, name) + 8,
            id: offset_of!($t, id),
            uuid: offset_of!($t, uuid),
            name: offset_of!($t, name),
        }
    };
}

const API: ApiFields = ApiFields {
    struct_name: "CUpti_ActivityAPI",
    size: size_of::<Api>(),
    need: size_of::<Api>(),
    cbid: offset_of!(Api, cbid),
    start: offset_of!(Api, start),
    end: offset_of!(Api, end),
    process_id: offset_of!(Api, process_id),
    thread_id: offset_of!(Api, thread_id),
    correlation_id: offset_of!(Api, correlation_id),
    return_value: offset_of!(Api, return_value),
};

const SYNC1: SyncFields = sync_fields!(Synchronization, None::<usize>);
const SYNC2: SyncFields = sync_fields!(Synchronization2, Some(offset_of!(Synchronization2, return_value)));

/// CUDA 12.0–12.1 (CUPTI API version 18). CUPTI 11.8 reports 18 too; its
/// `CUpti_ActivityKernel8` keeps every field read here at the same offset.
pub const CUDA_12_0: Layout = Layout {
    release: "12.0–12.1",
    kernel: kernel_fields!(Kernel9),
    memcpy: memcpy_fields!(Memcpy5, "CUpti_ActivityMemcpy5"),
    memset: memset_fields!(Memset4),
    sync: SYNC1,
    api: API,
    device: device_fields!(Device4),
};

/// CUDA 12.2–12.6 (API versions 20–24; there was no 12.7).
pub const CUDA_12_2: Layout = Layout { release: "12.2–12.6", device: device_fields!(Device5), ..CUDA_12_0 };

/// CUDA 12.8–12.9 (API versions 26–28).
pub const CUDA_12_8: Layout = Layout {
    release: "12.8–12.9",
    memcpy: memcpy_fields!(Memcpy6V12, "CUpti_ActivityMemcpy6"),
    sync: SYNC2,
    ..CUDA_12_2
};

/// CUDA 13.0 (API versions 130000–130001).
pub const CUDA_13_0: Layout = Layout {
    release: "13.0",
    kernel: kernel_fields!(Kernel10),
    memcpy: memcpy_fields!(Memcpy6, "CUpti_ActivityMemcpy6"),
    ..CUDA_12_8
};

/// CUDA 13.1 (API versions 130100–130101).
pub const CUDA_13_1: Layout = Layout { release: "13.1", kernel: kernel_fields!(Kernel11), ..CUDA_13_0 };

/// CUDA 13.2 (API versions 130200–130202).
pub const CUDA_13_2: Layout = Layout { release: "13.2", device: device_fields!(Device6), ..CUDA_13_1 };

/// CUDA 13.3 (API versions 130300–130301).
pub const CUDA_13_3: Layout = Layout { release: "13.3", kernel: kernel_fields!(Kernel12), ..CUDA_13_2 };

/// CUDA 13.4 (API versions 130400–130401).
pub const CUDA_13_4: Layout = Layout {
    release: "13.4",
    kernel: kernel_fields!(Kernel13),
    memcpy: memcpy_fields!(Memcpy7, "CUpti_ActivityMemcpy7"),
    memset: memset_fields!(Memset5),
    ..CUDA_13_3
};

/// Every supported layout, oldest first.
pub const ALL: [&Layout; 8] =
    [&CUDA_12_0, &CUDA_12_2, &CUDA_12_8, &CUDA_13_0, &CUDA_13_1, &CUDA_13_2, &CUDA_13_3, &CUDA_13_4];

/// Which CUPTI releases this library reads, for error messages and docs.
pub const SUPPORTED: &str = "CUDA 12.0–12.9 and 13.0–13.4 (CUPTI API versions 18, 20–24, 26–28, 130000–130001, \
                             130100–130101, 130200–130202, 130300–130301, 130400–130401)";

/// The layout for the CUPTI API version `cuptiGetVersion` returned, or
/// `None` for a release whose record layouts this library does not know.
/// Exactly the versions whose headers `tests/cupti_headers.rs` checks (every
/// CUPTI wheel on PyPI of these releases): a patch release with a new API
/// version is refused until its header is checked.
pub fn for_version(api_version: u32) -> Option<&'static Layout> {
    match api_version {
        18 => Some(&CUDA_12_0),
        20..=24 => Some(&CUDA_12_2),
        26..=28 => Some(&CUDA_12_8),
        130_000..=130_001 => Some(&CUDA_13_0),
        130_100..=130_101 => Some(&CUDA_13_1),
        130_200..=130_202 => Some(&CUDA_13_2),
        130_300..=130_301 => Some(&CUDA_13_3),
        130_400..=130_401 => Some(&CUDA_13_4),
        _ => None,
    }
}

/// A record's bytes, for tests and tools that build synthetic CUPTI buffers.
pub fn bytes_of<T: Copy + RecordStruct>(record: &T) -> &[u8] {
    // SAFETY: `T` is one of this module's `repr(C)` structs (sealed trait), all
    // of whose bytes are fields (explicit padding included, checked by the
    // size tests), so viewing it as bytes reads only initialised memory.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Marker for the record structs above (sealed).
pub trait RecordStruct: sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! records {
    ($($t:ident),*) => { $(impl sealed::Sealed for $t {} impl RecordStruct for $t {})* };
}
records!(
    Kernel9,
    Kernel10,
    Kernel11,
    Kernel12,
    Kernel13,
    Memcpy5,
    Memcpy6V12,
    Memcpy6,
    Memcpy7,
    Memset4,
    Memset5,
    Synchronization,
    Synchronization2,
    Api,
    Device4,
    Device5,
    Device6
);

#[cfg(test)]
mod tests {
    use super::*;
    use cudarc::cupti::sys as cu;

    /// Offsets computed by hand from the field lists of `cupti_activity.h`
    /// (CUDA 12.6 and 13.x): the shared prefix of every kernel record.
    #[test]
    fn kernel_offsets_match_the_header() {
        for k in ALL.iter().map(|l| l.kernel) {
            assert_eq!(
                (k.start, k.end, k.device_id, k.context_id, k.stream_id),
                (16, 24, 40, 44, 48),
                "{}",
                k.struct_name
            );
            assert_eq!((k.grid, k.block), ([52, 56, 60], [64, 68, 72]), "{}", k.struct_name);
            assert_eq!((k.correlation_id, k.name, k.need), (92, 104, 112), "{}", k.struct_name);
        }
        assert_eq!(size_of::<Kernel9>(), 208);
        assert_eq!(size_of::<Kernel10>(), 216);
        assert_eq!(size_of::<Kernel11>(), 224);
        assert_eq!(size_of::<Kernel12>(), 232);
        assert_eq!(size_of::<Kernel13>(), 248);
        assert_eq!(offset_of!(Kernel9, max_active_clusters), 204);
        assert_eq!(offset_of!(Kernel13, source_graph_node_id), 240);
    }

    #[test]
    fn copy_set_sync_api_device_offsets_match_the_header() {
        for l in ALL {
            let m = l.memcpy;
            assert_eq!((m.copy_kind, m.src_kind, m.dst_kind, m.flags, m.bytes), (4, 5, 6, 7, 8));
            assert_eq!(
                (m.start, m.end, m.device_id, m.context_id, m.stream_id, m.correlation_id),
                (16, 24, 32, 36, 40, 44)
            );
            let s = l.memset;
            assert_eq!((s.value, s.bytes, s.start, s.end), (4, 8, 16, 24));
            assert_eq!((s.device_id, s.context_id, s.stream_id, s.correlation_id, s.memory_kind), (32, 36, 40, 44, 50));
            let y = l.sync;
            assert_eq!(
                (y.sync_type, y.start, y.end, y.correlation_id, y.context_id, y.stream_id, y.cuda_event_id),
                (4, 8, 16, 24, 28, 32, 36)
            );
            let a = l.api;
            assert_eq!(
                (a.cbid, a.start, a.end, a.process_id, a.thread_id, a.correlation_id, a.return_value, a.size),
                (4, 8, 16, 24, 28, 32, 36, 40)
            );
            let d = l.device;
            assert_eq!((d.id, d.uuid, d.name), (112, 120, 136));
        }
        assert_eq!(
            (size_of::<Memcpy5>(), size_of::<Memcpy6V12>(), size_of::<Memcpy6>(), size_of::<Memcpy7>()),
            (88, 96, 96, 112)
        );
        assert_eq!((size_of::<Memset4>(), size_of::<Memset5>()), (88, 104));
        assert_eq!((size_of::<Synchronization>(), size_of::<Synchronization2>()), (40, 56));
        assert_eq!(offset_of!(Synchronization2, return_value), 48);
        assert_eq!((size_of::<Device4>(), size_of::<Device5>(), size_of::<Device6>()), (176, 184, 192));
    }

    /// Cross-check against the bindgen output of the CUDA 13.0 headers that
    /// `cudarc` ships (the structs it has for that release).
    #[test]
    fn layouts_match_cudarc_bindings() {
        macro_rules! same {
            ($ours:ident, $theirs:ty, $( $a:ident = $b:ident ),*) => {
                assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), stringify!($ours));
                $( assert_eq!(offset_of!($ours, $a), offset_of!($theirs, $b), concat!(stringify!($ours), ".", stringify!($a))); )*
            };
        }
        same!(
            Kernel9,
            cu::CUpti_ActivityKernel9,
            start = start,
            end = end,
            device_id = deviceId,
            context_id = contextId,
            stream_id = streamId,
            grid_x = gridX,
            grid_y = gridY,
            grid_z = gridZ,
            block_x = blockX,
            block_y = blockY,
            block_z = blockZ,
            correlation_id = correlationId,
            name = name,
            graph_id = graphId,
            max_active_clusters = maxActiveClusters
        );
        same!(
            Kernel10,
            cu::CUpti_ActivityKernel10,
            start = start,
            correlation_id = correlationId,
            name = name,
            is_device_launched = isDeviceLaunched
        );
        same!(
            Memcpy5,
            cu::CUpti_ActivityMemcpy5,
            copy_kind = copyKind,
            bytes = bytes,
            start = start,
            end = end,
            device_id = deviceId,
            context_id = contextId,
            stream_id = streamId,
            correlation_id = correlationId,
            pad2 = pad2
        );
        same!(
            Memcpy6,
            cu::CUpti_ActivityMemcpy6,
            bytes = bytes,
            start = start,
            correlation_id = correlationId,
            is_device_launched = isDeviceLaunched,
            copy_count = copyCount
        );
        same!(
            Memset4,
            cu::CUpti_ActivityMemset4,
            value = value,
            bytes = bytes,
            start = start,
            end = end,
            device_id = deviceId,
            correlation_id = correlationId,
            memory_kind = memoryKind
        );
        same!(
            Synchronization,
            cu::CUpti_ActivitySynchronization,
            sync_type = type_,
            start = start,
            end = end,
            correlation_id = correlationId,
            context_id = contextId,
            stream_id = streamId,
            cuda_event_id = cudaEventId
        );
        same!(
            Synchronization2,
            cu::CUpti_ActivitySynchronization2,
            cuda_event_sync_id = cudaEventSyncId,
            return_value = returnValue
        );
        same!(
            Api,
            cu::CUpti_ActivityAPI,
            cbid = cbid,
            start = start,
            end = end,
            process_id = processId,
            thread_id = threadId,
            correlation_id = correlationId,
            return_value = returnValue
        );
        same!(Device4, cu::CUpti_ActivityDevice4, id = id, uuid = uuid, name = name, mig_uuid = migUuid);
        same!(Device5, cu::CUpti_ActivityDevice5, id = id, uuid = uuid, name = name, numa_id = numaId);
        assert_eq!(cu::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL as u32, kind::CONCURRENT_KERNEL);
        assert_eq!(cu::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_SYNCHRONIZATION as u32, kind::SYNCHRONIZATION);
        assert_eq!(cu::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_DEVICE as u32, kind::DEVICE);
        assert_eq!(cu::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_RUNTIME as u32, kind::RUNTIME);
    }

    #[test]
    fn versions_map_to_the_release_layouts() {
        assert_eq!(for_version(18).map(|l| l.release), Some("12.0–12.1"));
        assert_eq!(for_version(24).map(|l| l.device.struct_name), Some("CUpti_ActivityDevice5"));
        assert_eq!(for_version(26).map(|l| l.sync.struct_name), Some("CUpti_ActivitySynchronization2"));
        assert_eq!(for_version(28).map(|l| l.memcpy.size), Some(96));
        assert_eq!(for_version(130001).map(|l| l.kernel.struct_name), Some("CUpti_ActivityKernel10"));
        assert_eq!(for_version(130101).map(|l| l.kernel.struct_name), Some("CUpti_ActivityKernel11"));
        assert_eq!(for_version(130202).map(|l| l.device.struct_name), Some("CUpti_ActivityDevice6"));
        assert_eq!(for_version(130301).map(|l| l.kernel.struct_name), Some("CUpti_ActivityKernel12"));
        assert_eq!(
            for_version(130401).map(|l| (l.kernel.struct_name, l.memset.struct_name)),
            Some(("CUpti_ActivityKernel13", "CUpti_ActivityMemset5"))
        );
        for unsupported in [0, 14, 17, 19, 25, 29, 30, 120000, 130002, 130099, 130402, 130500, 140001] {
            assert!(for_version(unsupported).is_none(), "{unsupported}");
        }
    }
}
