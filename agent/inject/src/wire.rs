//! The wire format between the injection library and the agent, version 1.
//!
//! One frame is one `SOCK_SEQPACKET` message of at most [`MAX_FRAME`] bytes.
//! All integers are little-endian.
//!
//! ```text
//! header (48 bytes)
//!   0  magic         4   "STRN"
//!   4  version       u16 1 (a reader rejects any other)
//!   6  header_len    u16 48 (a longer header is skipped: room for additions)
//!   8  pid           u32 sender's pid, in its own pid namespace
//!  12  cupti_version u32 cuptiGetVersion()
//!  16  seq           u64 frame number of this process, from 0; a gap = frames lost
//!  24  dropped       u64 records the library dropped so far (agent absent or slow)
//!  32  cupti_dropped u64 records CUPTI dropped so far (no buffer space)
//!  40  record_count  u32 records in the body
//!  44  flags         u32 reserved, 0
//! body: record_count records, each
//!   tag u8, len u16 (payload bytes), payload
//! ```
//!
//! A payload may be longer than this version's fields (later additions are
//! appended); unknown tags are skipped. Names (kernel, API function, device)
//! travel once per connection as `NAME` records; other records carry their
//! 32-bit id, 0 meaning "no name". Payloads, in order:
//!
//! | tag | record | payload |
//! |---|---|---|
//! | 1 | NAME | id u32, bytes (the rest of the payload, at most 4096) |
//! | 2 | KERNEL | start u64, end u64, correlation u32, device u32, context u32, stream u32, name u32, grid i32×3, block i32×3 |
//! | 3 | MEMCPY | start, end, correlation, device, context, stream, bytes u64, copy_kind u8, src_kind u8, dst_kind u8, flags u8 |
//! | 4 | MEMSET | start, end, correlation, device, context, stream, bytes u64, value u32, memory_kind u16 |
//! | 5 | SYNC | start, end, correlation, context, stream, sync_type u32, event u32, ret u32 (`u32::MAX`: unknown) |
//! | 6 | API | start, end, correlation, thread u32, domain u8 (1 driver, 2 runtime), cbid u32, name u32, ret u32 |
//! | 7 | DEVICE | id u32, uuid 16 bytes, name u32 |
//!
//! Timestamps are CLOCK_MONOTONIC nanoseconds (the library registers a CUPTI
//! timestamp callback); the agent converts them to UTC.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub const MAGIC: [u8; 4] = *b"STRN";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 48;
/// Largest frame either side sends or accepts.
pub const MAX_FRAME: usize = 64 * 1024;
/// Longest name; the library truncates longer ones.
pub const MAX_NAME_LEN: usize = 4096;
/// Most names one connection may define.
pub const MAX_NAMES: usize = 1 << 16;
/// Most name bytes one connection may define.
pub const MAX_NAME_BYTES: usize = 16 << 20;
/// `Sync::ret` on the wire when CUPTI does not report it.
const RET_UNKNOWN: u32 = u32::MAX;
/// Bytes of tag + length in front of every payload.
pub const RECORD_OVERHEAD: usize = 3;

pub mod tag {
    pub const NAME: u8 = 1;
    pub const KERNEL: u8 = 2;
    pub const MEMCPY: u8 = 3;
    pub const MEMSET: u8 = 4;
    pub const SYNC: u8 = 5;
    pub const API: u8 = 6;
    pub const DEVICE: u8 = 7;
}

/// Frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub pid: u32,
    pub cupti_version: u32,
    pub seq: u64,
    pub dropped: u64,
    pub cupti_dropped: u64,
    pub record_count: u32,
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kernel {
    pub start: u64,
    pub end: u64,
    pub correlation_id: u32,
    pub device_id: u32,
    pub context_id: u32,
    pub stream_id: u32,
    pub name: u32,
    pub grid: [i32; 3],
    pub block: [i32; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memcpy {
    pub start: u64,
    pub end: u64,
    pub correlation_id: u32,
    pub device_id: u32,
    pub context_id: u32,
    pub stream_id: u32,
    pub bytes: u64,
    /// `CUpti_ActivityMemcpyKind`.
    pub copy_kind: u8,
    /// `CUpti_ActivityMemoryKind` of source and destination.
    pub src_kind: u8,
    pub dst_kind: u8,
    pub flags: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memset {
    pub start: u64,
    pub end: u64,
    pub correlation_id: u32,
    pub device_id: u32,
    pub context_id: u32,
    pub stream_id: u32,
    pub bytes: u64,
    pub value: u32,
    /// `CUpti_ActivityMemoryKind`.
    pub memory_kind: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sync {
    pub start: u64,
    pub end: u64,
    pub correlation_id: u32,
    pub context_id: u32,
    pub stream_id: u32,
    /// `CUpti_ActivitySynchronizationType`.
    pub sync_type: u32,
    pub event_id: u32,
    /// CUDA result of the call (`CUpti_ActivitySynchronization2`, CUDA 12.8+).
    pub ret: Option<u32>,
}

/// Which CUDA API an [`Api`] record is from (`CUpti_CallbackDomain`).
pub mod domain {
    pub const DRIVER: u8 = 1;
    pub const RUNTIME: u8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Api {
    pub start: u64,
    pub end: u64,
    pub correlation_id: u32,
    /// Thread id (system tid, `gettid()`, in the sender's pid namespace).
    pub thread_id: u32,
    pub domain: u8,
    pub cbid: u32,
    /// Name id of the API function.
    pub name: u32,
    pub ret: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Device {
    /// CUDA device ordinal, as `deviceId` of the other records.
    pub id: u32,
    pub uuid: [u8; 16],
    pub name: u32,
}

/// One activity record as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Kernel(Kernel),
    Memcpy(Memcpy),
    Memset(Memset),
    Sync(Sync),
    Api(Api),
    Device(Device),
}

const KERNEL_LEN: usize = 16 + 5 * 4 + 6 * 4;
const MEMCPY_LEN: usize = 16 + 4 * 4 + 8 + 4;
const MEMSET_LEN: usize = 16 + 4 * 4 + 8 + 4 + 2;
const SYNC_LEN: usize = 16 + 6 * 4;
const API_LEN: usize = 16 + 2 * 4 + 1 + 3 * 4;
const DEVICE_LEN: usize = 4 + 16 + 4;

impl Activity {
    fn tag_and_len(&self) -> (u8, usize) {
        match self {
            Activity::Kernel(_) => (tag::KERNEL, KERNEL_LEN),
            Activity::Memcpy(_) => (tag::MEMCPY, MEMCPY_LEN),
            Activity::Memset(_) => (tag::MEMSET, MEMSET_LEN),
            Activity::Sync(_) => (tag::SYNC, SYNC_LEN),
            Activity::Api(_) => (tag::API, API_LEN),
            Activity::Device(_) => (tag::DEVICE, DEVICE_LEN),
        }
    }

    /// Bytes this record takes in a frame.
    pub fn encoded_len(&self) -> usize {
        RECORD_OVERHEAD + self.tag_and_len().1
    }

    /// The name ids this record refers to (0 = none).
    pub fn name_id(&self) -> u32 {
        match self {
            Activity::Kernel(k) => k.name,
            Activity::Api(a) => a.name,
            Activity::Device(d) => d.name,
            _ => 0,
        }
    }
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Name {
        id: u32,
        bytes: &'a [u8],
    },
    Activity(Activity),
    /// A record of a later minor version, skipped.
    Unknown {
        tag: u8,
    },
}

/// What was wrong with a frame. Byte offsets count from the frame start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    TooShort { len: usize },
    TooLong { len: usize },
    BadMagic([u8; 4]),
    UnsupportedVersion(u16),
    BadHeaderLen { header_len: u16, frame_len: usize },
    Truncated { at: usize, need: usize, have: usize },
    ShortPayload { at: usize, tag: u8, len: usize, need: usize },
    CountMismatch { header: u32, found: u32 },
    BadNameId { at: usize },
    NameTooLong { id: u32, len: usize },
    NameRedefined { id: u32 },
    TooManyNames { names: usize, bytes: usize },
    PidChanged { from: u32, to: u32 },
    SeqWentBack { last: u64, seq: u64 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooShort { len } => {
                write!(f, "frame of {len} bytes is shorter than the {HEADER_LEN}-byte header")
            }
            WireError::TooLong { len } => write!(f, "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
            WireError::BadMagic(m) => write!(f, "bad magic {m:02x?}, expected \"STRN\" (not a strand-inject client?)"),
            WireError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "wire version {v} is not supported (this agent reads version {VERSION}); upgrade the agent or the library"
                )
            }
            WireError::BadHeaderLen { header_len, frame_len } => {
                write!(f, "header_len {header_len} is below {HEADER_LEN} or beyond the {frame_len}-byte frame")
            }
            WireError::Truncated { at, need, have } => {
                write!(f, "record at byte {at} needs {need} bytes but the frame has {have} left")
            }
            WireError::ShortPayload { at, tag, len, need } => {
                write!(
                    f,
                    "record at byte {at} (tag {tag}) has a {len}-byte payload, shorter than the {need} bytes of its fields"
                )
            }
            WireError::CountMismatch { header, found } => {
                write!(f, "header announces {header} records but the body holds {found}")
            }
            WireError::BadNameId { at } => write!(f, "name record at byte {at} uses the reserved id 0"),
            WireError::NameTooLong { id, len } => write!(f, "name {id} is {len} bytes, longer than {MAX_NAME_LEN}"),
            WireError::NameRedefined { id } => write!(f, "name {id} redefined with different bytes"),
            WireError::TooManyNames { names, bytes } => {
                write!(
                    f,
                    "connection defines more than {MAX_NAMES} names or {MAX_NAME_BYTES} name bytes ({names} names, {bytes} bytes)"
                )
            }
            WireError::PidChanged { from, to } => write!(f, "pid changed from {from} to {to} on one connection"),
            WireError::SeqWentBack { last, seq } => write!(f, "frame sequence went back from {last} to {seq}"),
        }
    }
}

impl std::error::Error for WireError {}

// ---------------------------------------------------------------- encoding

/// Builds one frame: records are appended until the next does not fit.
#[derive(Debug)]
pub struct FrameBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl Default for FrameBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBuilder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(MAX_FRAME);
        buf.resize(HEADER_LEN, 0);
        Self { buf, count: 0 }
    }

    /// Records appended since the last [`FrameBuilder::clear`].
    pub fn record_count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `bytes` more fit in this frame.
    pub fn fits(&self, bytes: usize) -> bool {
        self.buf.len() + bytes <= MAX_FRAME
    }

    /// Appends a name definition; `bytes` is cut to [`MAX_NAME_LEN`].
    /// Returns false (appending nothing) when it does not fit.
    pub fn push_name(&mut self, id: u32, bytes: &[u8]) -> bool {
        let bytes = &bytes[..bytes.len().min(MAX_NAME_LEN)];
        let len = 4 + bytes.len();
        if !self.fits(RECORD_OVERHEAD + len) {
            return false;
        }
        self.buf.push(tag::NAME);
        self.buf.extend_from_slice(&(len as u16).to_le_bytes());
        self.buf.extend_from_slice(&id.to_le_bytes());
        self.buf.extend_from_slice(bytes);
        self.count += 1;
        true
    }

    /// Appends a record; returns false (appending nothing) when it does not fit.
    pub fn push(&mut self, a: &Activity) -> bool {
        let (t, len) = a.tag_and_len();
        if !self.fits(RECORD_OVERHEAD + len) {
            return false;
        }
        let b = &mut self.buf;
        b.push(t);
        b.extend_from_slice(&(len as u16).to_le_bytes());
        let before = b.len();
        match a {
            Activity::Kernel(k) => {
                put_u64s(b, &[k.start, k.end]);
                put_u32s(b, &[k.correlation_id, k.device_id, k.context_id, k.stream_id, k.name]);
                for v in k.grid.iter().chain(k.block.iter()) {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            Activity::Memcpy(m) => {
                put_u64s(b, &[m.start, m.end]);
                put_u32s(b, &[m.correlation_id, m.device_id, m.context_id, m.stream_id]);
                put_u64s(b, &[m.bytes]);
                b.extend_from_slice(&[m.copy_kind, m.src_kind, m.dst_kind, m.flags]);
            }
            Activity::Memset(m) => {
                put_u64s(b, &[m.start, m.end]);
                put_u32s(b, &[m.correlation_id, m.device_id, m.context_id, m.stream_id]);
                put_u64s(b, &[m.bytes]);
                put_u32s(b, &[m.value]);
                b.extend_from_slice(&m.memory_kind.to_le_bytes());
            }
            Activity::Sync(s) => {
                put_u64s(b, &[s.start, s.end]);
                let ret = s.ret.unwrap_or(RET_UNKNOWN);
                put_u32s(b, &[s.correlation_id, s.context_id, s.stream_id, s.sync_type, s.event_id, ret]);
            }
            Activity::Api(a) => {
                put_u64s(b, &[a.start, a.end]);
                put_u32s(b, &[a.correlation_id, a.thread_id]);
                b.push(a.domain);
                put_u32s(b, &[a.cbid, a.name, a.ret]);
            }
            Activity::Device(d) => {
                put_u32s(b, &[d.id]);
                b.extend_from_slice(&d.uuid);
                put_u32s(b, &[d.name]);
            }
        }
        debug_assert_eq!(b.len() - before, len);
        self.count += 1;
        true
    }

    /// Writes the header (its `record_count` is this builder's) and returns the frame.
    pub fn finish(&mut self, mut header: Header) -> &[u8] {
        header.record_count = self.count;
        let h = &mut self.buf[..HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&VERSION.to_le_bytes());
        h[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        h[8..12].copy_from_slice(&header.pid.to_le_bytes());
        h[12..16].copy_from_slice(&header.cupti_version.to_le_bytes());
        h[16..24].copy_from_slice(&header.seq.to_le_bytes());
        h[24..32].copy_from_slice(&header.dropped.to_le_bytes());
        h[32..40].copy_from_slice(&header.cupti_dropped.to_le_bytes());
        h[40..44].copy_from_slice(&header.record_count.to_le_bytes());
        h[44..48].copy_from_slice(&header.flags.to_le_bytes());
        &self.buf
    }

    /// Empties the frame for reuse.
    pub fn clear(&mut self) {
        self.buf.truncate(HEADER_LEN);
        self.count = 0;
    }
}

fn put_u64s(b: &mut Vec<u8>, vs: &[u64]) {
    for v in vs {
        b.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_u32s(b: &mut Vec<u8>, vs: &[u32]) {
    for v in vs {
        b.extend_from_slice(&v.to_le_bytes());
    }
}

// ---------------------------------------------------------------- decoding

/// Little-endian reader over a payload whose length was checked up front.
struct Fields<'a> {
    b: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.b[self.at];
        self.at += 1;
        v
    }
    fn u16(&mut self) -> u16 {
        let v = u16::from_le_bytes([self.b[self.at], self.b[self.at + 1]]);
        self.at += 2;
        v
    }
    fn u32(&mut self) -> u32 {
        let mut a = [0; 4];
        a.copy_from_slice(&self.b[self.at..self.at + 4]);
        self.at += 4;
        u32::from_le_bytes(a)
    }
    fn i32(&mut self) -> i32 {
        self.u32() as i32
    }
    fn u64(&mut self) -> u64 {
        let mut a = [0; 8];
        a.copy_from_slice(&self.b[self.at..self.at + 8]);
        self.at += 8;
        u64::from_le_bytes(a)
    }
}

/// Reads and checks the header.
pub fn decode_header(frame: &[u8]) -> Result<Header, WireError> {
    if frame.len() > MAX_FRAME {
        return Err(WireError::TooLong { len: frame.len() });
    }
    if frame.len() < HEADER_LEN {
        return Err(WireError::TooShort { len: frame.len() });
    }
    let mut f = Fields { b: frame, at: 0 };
    let magic = [f.u8(), f.u8(), f.u8(), f.u8()];
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = f.u16();
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let header_len = f.u16();
    if (header_len as usize) < HEADER_LEN || header_len as usize > frame.len() {
        return Err(WireError::BadHeaderLen { header_len, frame_len: frame.len() });
    }
    Ok(Header {
        pid: f.u32(),
        cupti_version: f.u32(),
        seq: f.u64(),
        dropped: f.u64(),
        cupti_dropped: f.u64(),
        record_count: f.u32(),
        flags: f.u32(),
    })
}

/// The header and an iterator over the records of one frame. The iterator
/// stops after the first error; a body that ends with fewer or more records
/// than the header announced ends in [`WireError::CountMismatch`].
pub fn decode(frame: &[u8]) -> Result<(Header, Records<'_>), WireError> {
    let header = decode_header(frame)?;
    let start = u16::from_le_bytes([frame[6], frame[7]]) as usize;
    Ok((header, Records { frame, at: start, announced: header.record_count, found: 0, done: false }))
}

/// Iterator over the records of a frame (see [`decode`]).
#[derive(Debug)]
pub struct Records<'a> {
    frame: &'a [u8],
    at: usize,
    announced: u32,
    found: u32,
    done: bool,
}

impl<'a> Records<'a> {
    fn fail(&mut self, e: WireError) -> Option<Result<Record<'a>, WireError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let have = self.frame.len() - self.at;
        if have == 0 {
            self.done = true;
            if self.found != self.announced {
                return Some(Err(WireError::CountMismatch { header: self.announced, found: self.found }));
            }
            return None;
        }
        let at = self.at;
        if have < RECORD_OVERHEAD {
            return self.fail(WireError::Truncated { at, need: RECORD_OVERHEAD, have });
        }
        let t = self.frame[at];
        let len = u16::from_le_bytes([self.frame[at + 1], self.frame[at + 2]]) as usize;
        if have - RECORD_OVERHEAD < len {
            return self.fail(WireError::Truncated { at, need: RECORD_OVERHEAD + len, have });
        }
        let payload = &self.frame[at + RECORD_OVERHEAD..at + RECORD_OVERHEAD + len];
        self.at += RECORD_OVERHEAD + len;
        self.found = self.found.saturating_add(1);
        if self.found > self.announced {
            return self.fail(WireError::CountMismatch { header: self.announced, found: self.found });
        }
        let need = match t {
            tag::NAME => 4,
            tag::KERNEL => KERNEL_LEN,
            tag::MEMCPY => MEMCPY_LEN,
            tag::MEMSET => MEMSET_LEN,
            tag::SYNC => SYNC_LEN,
            tag::API => API_LEN,
            tag::DEVICE => DEVICE_LEN,
            _ => return Some(Ok(Record::Unknown { tag: t })),
        };
        if len < need {
            return self.fail(WireError::ShortPayload { at, tag: t, len, need });
        }
        let mut f = Fields { b: payload, at: 0 };
        let rec = match t {
            tag::NAME => {
                let id = f.u32();
                if id == 0 {
                    return self.fail(WireError::BadNameId { at });
                }
                let bytes = &payload[4..];
                if bytes.len() > MAX_NAME_LEN {
                    return self.fail(WireError::NameTooLong { id, len: bytes.len() });
                }
                Record::Name { id, bytes }
            }
            tag::KERNEL => Record::Activity(Activity::Kernel(Kernel {
                start: f.u64(),
                end: f.u64(),
                correlation_id: f.u32(),
                device_id: f.u32(),
                context_id: f.u32(),
                stream_id: f.u32(),
                name: f.u32(),
                grid: [f.i32(), f.i32(), f.i32()],
                block: [f.i32(), f.i32(), f.i32()],
            })),
            tag::MEMCPY => Record::Activity(Activity::Memcpy(Memcpy {
                start: f.u64(),
                end: f.u64(),
                correlation_id: f.u32(),
                device_id: f.u32(),
                context_id: f.u32(),
                stream_id: f.u32(),
                bytes: f.u64(),
                copy_kind: f.u8(),
                src_kind: f.u8(),
                dst_kind: f.u8(),
                flags: f.u8(),
            })),
            tag::MEMSET => Record::Activity(Activity::Memset(Memset {
                start: f.u64(),
                end: f.u64(),
                correlation_id: f.u32(),
                device_id: f.u32(),
                context_id: f.u32(),
                stream_id: f.u32(),
                bytes: f.u64(),
                value: f.u32(),
                memory_kind: f.u16(),
            })),
            tag::SYNC => Record::Activity(Activity::Sync(Sync {
                start: f.u64(),
                end: f.u64(),
                correlation_id: f.u32(),
                context_id: f.u32(),
                stream_id: f.u32(),
                sync_type: f.u32(),
                event_id: f.u32(),
                ret: Some(f.u32()).filter(|r| *r != RET_UNKNOWN),
            })),
            tag::API => Record::Activity(Activity::Api(Api {
                start: f.u64(),
                end: f.u64(),
                correlation_id: f.u32(),
                thread_id: f.u32(),
                domain: f.u8(),
                cbid: f.u32(),
                name: f.u32(),
                ret: f.u32(),
            })),
            _ => {
                let id = f.u32();
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(&payload[4..20]);
                f.at += 16;
                Record::Activity(Activity::Device(Device { id, uuid, name: f.u32() }))
            }
        };
        Some(Ok(rec))
    }
}

/// One decoded frame of a [`Connection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub activities: Vec<Activity>,
    /// Frames of this process missing between the previous frame and this one.
    pub frames_lost: u64,
    /// Records of tags this reader does not know (a newer library).
    pub unknown_records: u32,
}

/// The receiving side of one connection: checks frames and keeps the names
/// the client defined. A frame with any error is rejected whole (no name of
/// it is kept), so the connection state never holds half a frame.
#[derive(Debug, Default)]
pub struct Connection {
    names: HashMap<u32, Arc<str>>,
    name_bytes: usize,
    pid: Option<u32>,
    last_seq: Option<u64>,
}

impl Connection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one frame.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Frame, WireError> {
        let (header, records) = decode(frame)?;
        if let Some(pid) = self.pid
            && pid != header.pid
        {
            return Err(WireError::PidChanged { from: pid, to: header.pid });
        }
        if let Some(last) = self.last_seq
            && header.seq <= last
        {
            return Err(WireError::SeqWentBack { last, seq: header.seq });
        }
        // Bounded by the frame: every record takes at least RECORD_OVERHEAD bytes.
        let mut activities =
            Vec::with_capacity(header.record_count.min((frame.len() / RECORD_OVERHEAD) as u32) as usize);
        let mut new_names: Vec<(u32, &[u8])> = Vec::new();
        let mut unknown_records = 0;
        let (mut names, mut bytes) = (self.names.len(), self.name_bytes);
        for r in records {
            match r? {
                Record::Name { id, bytes: b } => {
                    if let Some(old) = self.names.get(&id) {
                        if old.as_bytes() != String::from_utf8_lossy(b).as_bytes() {
                            return Err(WireError::NameRedefined { id });
                        }
                        continue;
                    }
                    if new_names.iter().any(|(i, old)| *i == id && *old != b) {
                        return Err(WireError::NameRedefined { id });
                    }
                    names += 1;
                    bytes += b.len();
                    if names > MAX_NAMES || bytes > MAX_NAME_BYTES {
                        return Err(WireError::TooManyNames { names, bytes });
                    }
                    new_names.push((id, b));
                }
                Record::Activity(a) => activities.push(a),
                Record::Unknown { .. } => unknown_records += 1,
            }
        }
        for (id, b) in new_names {
            if let std::collections::hash_map::Entry::Vacant(e) = self.names.entry(id) {
                self.name_bytes += b.len();
                e.insert(Arc::from(String::from_utf8_lossy(b)));
            }
        }
        let frames_lost = match self.last_seq {
            Some(last) => header.seq - last - 1,
            None => 0,
        };
        self.pid = Some(header.pid);
        self.last_seq = Some(header.seq);
        Ok(Frame { header, activities, frames_lost, unknown_records })
    }

    /// The name a client defined for `id`; `None` for 0 or an id never defined.
    pub fn name(&self, id: u32) -> Option<&Arc<str>> {
        self.names.get(&id)
    }

    /// Names defined on this connection.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Activity> {
        vec![
            Activity::Kernel(Kernel {
                start: 1_000,
                end: 2_500,
                correlation_id: 7,
                device_id: 1,
                context_id: 3,
                stream_id: 13,
                name: 1,
                grid: [128, 2, 1],
                block: [256, 1, 1],
            }),
            Activity::Memcpy(Memcpy {
                start: 3_000,
                end: 3_900,
                correlation_id: 8,
                device_id: 0,
                context_id: 1,
                stream_id: 7,
                bytes: 1 << 20,
                copy_kind: 1,
                src_kind: 2,
                dst_kind: 3,
                flags: 1,
            }),
            Activity::Memset(Memset {
                start: 4_000,
                end: 4_100,
                correlation_id: 9,
                device_id: 0,
                context_id: 1,
                stream_id: 7,
                bytes: 4096,
                value: 0xab,
                memory_kind: 3,
            }),
            Activity::Sync(Sync {
                start: 5,
                end: 6,
                correlation_id: 10,
                context_id: 1,
                stream_id: 7,
                sync_type: 3,
                event_id: 0,
                ret: None,
            }),
            Activity::Sync(Sync {
                start: 7,
                end: 9,
                correlation_id: 11,
                context_id: 1,
                stream_id: 0,
                sync_type: 4,
                event_id: 0,
                ret: Some(0),
            }),
            Activity::Api(Api {
                start: 900,
                end: 950,
                correlation_id: 7,
                thread_id: 4242,
                domain: domain::RUNTIME,
                cbid: 211,
                name: 2,
                ret: 0,
            }),
            Activity::Device(Device { id: 1, uuid: [0x5a; 16], name: 3 }),
        ]
    }

    fn frame(names: &[(u32, &[u8])], acts: &[Activity], seq: u64) -> Vec<u8> {
        let mut b = FrameBuilder::new();
        for (id, n) in names {
            assert!(b.push_name(*id, n));
        }
        for a in acts {
            assert!(b.push(a));
        }
        b.finish(Header { pid: 99, cupti_version: 24, seq, dropped: 5, cupti_dropped: 2, record_count: 0, flags: 0 })
            .to_vec()
    }

    #[test]
    fn every_record_kind_round_trips_with_its_names() {
        let acts = sample();
        let f = frame(&[(1, b"_Z6kernelPf"), (2, b"cudaLaunchKernel_v7000"), (3, b"NVIDIA H100")], &acts, 0);
        assert_eq!(
            f.len(),
            HEADER_LEN
                + acts.iter().map(Activity::encoded_len).sum::<usize>()
                + 3 * RECORD_OVERHEAD
                + 12
                + 11
                + 22
                + 11
        );
        let mut c = Connection::new();
        let got = c.decode(&f).unwrap();
        assert_eq!(got.activities, acts);
        assert_eq!(
            got.header,
            Header { pid: 99, cupti_version: 24, seq: 0, dropped: 5, cupti_dropped: 2, record_count: 10, flags: 0 }
        );
        assert_eq!(c.name(1).map(|n| &**n), Some("_Z6kernelPf"));
        assert_eq!(c.name(2).map(|n| &**n), Some("cudaLaunchKernel_v7000"));
        assert_eq!(c.name(0), None);
        let next = c.decode(&frame(&[], &acts[..1], 3)).unwrap();
        assert_eq!(next.frames_lost, 2, "seq 1 and 2 are missing");
    }

    #[test]
    fn a_kernel_record_is_much_smaller_than_cuptis() {
        assert_eq!(sample()[0].encoded_len(), 63);
        assert!(sample()[0].encoded_len() * 3 < crate::layout::CUDA_12_8.kernel.size);
    }

    #[test]
    fn malformed_frames_name_what_is_wrong() {
        let good = frame(&[(1, b"k")], &sample(), 0);
        let err = |b: &[u8]| Connection::new().decode(b).unwrap_err();
        assert_eq!(err(&good[..10]), WireError::TooShort { len: 10 });
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(err(&bad).to_string().contains("bad magic"));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(err(&bad), WireError::UnsupportedVersion(2));
        assert!(err(&bad).to_string().contains("version 2 is not supported"));
        let mut bad = good.clone();
        bad[6] = 10;
        assert!(matches!(err(&bad), WireError::BadHeaderLen { header_len: 10, .. }));
        bad[7] = 0xff;
        assert!(err(&bad).to_string().contains("beyond the"));
        // Cut inside the last record.
        let e = err(&good[..good.len() - 5]);
        assert!(matches!(e, WireError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("needs"), "{e}");
        // One record fewer than announced.
        let mut bad = good.clone();
        bad[40] += 1;
        assert_eq!(err(&bad), WireError::CountMismatch { header: 9, found: 8 });
        let mut bad = good.clone();
        bad[40] -= 1;
        assert_eq!(err(&bad), WireError::CountMismatch { header: 7, found: 8 });
        // Kernel payload length shrunk to 10: the frame then ends mid-record
        // unless we also shrink the frame; build one by hand.
        let mut b = FrameBuilder::new();
        b.push(&sample()[0]);
        let mut short = b.finish(Header::default()).to_vec();
        short[HEADER_LEN + 1] = 10;
        short.truncate(HEADER_LEN + RECORD_OVERHEAD + 10);
        assert_eq!(err(&short), WireError::ShortPayload { at: HEADER_LEN, tag: tag::KERNEL, len: 10, need: 60 });
        assert_eq!(err(&vec![0; MAX_FRAME + 1]), WireError::TooLong { len: MAX_FRAME + 1 });
    }

    #[test]
    fn connection_rules_are_enforced() {
        let mut c = Connection::new();
        c.decode(&frame(&[(1, b"a")], &[], 5)).unwrap();
        assert_eq!(c.decode(&frame(&[], &[], 5)).unwrap_err(), WireError::SeqWentBack { last: 5, seq: 5 });
        assert_eq!(c.decode(&frame(&[(1, b"b")], &[], 6)).unwrap_err(), WireError::NameRedefined { id: 1 });
        c.decode(&frame(&[(1, b"a")], &[], 6)).expect("same definition again is fine");
        assert_eq!(c.decode(&frame(&[(0, b"x")], &[], 7)).unwrap_err(), WireError::BadNameId { at: HEADER_LEN });
        let mut other = frame(&[], &[], 8);
        other[8] = 1;
        assert_eq!(c.decode(&other).unwrap_err(), WireError::PidChanged { from: 99, to: 1 });
        // A rejected frame leaves no names behind.
        let mut bad = frame(&[(9, b"nine")], &sample()[..1], 9);
        bad.truncate(bad.len() - 1);
        assert!(c.decode(&bad).is_err());
        assert_eq!(c.name(9), None);
    }

    #[test]
    fn name_limits_bound_a_connection() {
        let mut c = Connection::new();
        let big = vec![b'n'; MAX_NAME_LEN];
        let per_frame = (MAX_FRAME - HEADER_LEN) / (RECORD_OVERHEAD + 4 + MAX_NAME_LEN);
        let mut id: u32 = 1;
        let mut seq = 0;
        let err = loop {
            let mut b = FrameBuilder::new();
            for _ in 0..per_frame {
                let mut name = big.clone();
                name[..4].copy_from_slice(&id.to_le_bytes());
                assert!(b.push_name(id, &name));
                id += 1;
            }
            seq += 1;
            if let Err(e) = c.decode(b.finish(Header { seq, ..Header::default() })) {
                break e;
            }
            assert!(seq < 10_000, "limit never hit");
        };
        assert!(matches!(err, WireError::TooManyNames { .. }), "{err}");
        assert!(c.name_count() * MAX_NAME_LEN <= MAX_NAME_BYTES);
    }

    #[test]
    fn unknown_tags_are_skipped_and_longer_payloads_accepted() {
        let mut b = FrameBuilder::new();
        b.push(&sample()[0]);
        let mut f = b.finish(Header::default()).to_vec();
        // Grow the kernel payload by 4 bytes (a future field) and add an unknown record.
        let len = u16::from_le_bytes([f[HEADER_LEN + 1], f[HEADER_LEN + 2]]) + 4;
        f[HEADER_LEN + 1..HEADER_LEN + 3].copy_from_slice(&len.to_le_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend_from_slice(&[200, 2, 0, 0xee, 0xee]);
        f[40] = 2;
        let got = Connection::new().decode(&f).unwrap();
        assert_eq!(got.activities, vec![sample()[0]]);
        assert_eq!(got.unknown_records, 1);
    }

    #[test]
    fn the_builder_refuses_what_does_not_fit() {
        let mut b = FrameBuilder::new();
        let k = sample()[0];
        let mut n = 0;
        while b.push(&k) {
            n += 1;
        }
        assert_eq!(n, (MAX_FRAME - HEADER_LEN) / k.encoded_len());
        assert!(!b.push_name(1, &[b'x'; 100]), "a name that does not fit is refused");
        let f = b.finish(Header::default()).to_vec();
        assert!(f.len() <= MAX_FRAME);
        assert_eq!(Connection::new().decode(&f).unwrap().activities.len(), n);
        b.clear();
        assert!(b.is_empty());
        assert!(b.push_name(1, &vec![b'a'; 10_000]), "long names are cut, not refused");
        let f = b.finish(Header::default()).to_vec();
        let mut c = Connection::new();
        c.decode(&f).unwrap();
        assert_eq!(c.name(1).map(|n| n.len()), Some(MAX_NAME_LEN));
    }
}
