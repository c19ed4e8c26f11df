//! Hand-made hostile Parquet files, for the tests (here, in the collector
//! and in the CLI) and as seeds of the fuzz targets. Each replays an attack
//! that once crashed or exhausted a strand process; see `bounded`.

/// A Thrift compact-protocol writer, just enough for Parquet footers.
#[derive(Default)]
pub struct Thrift {
    pub out: Vec<u8>,
    last: Vec<i16>,
}

const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const STRUCT: u8 = 12;

impl Thrift {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }

    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last.last().copied().unwrap_or(0);
        let delta = id - last;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            self.varint(((id << 1) ^ (id >> 15)) as u16 as u64);
        }
        if let Some(l) = self.last.last_mut() {
            *l = id;
        }
    }

    pub fn begin(&mut self) -> &mut Self {
        self.last.push(0);
        self
    }

    pub fn end(&mut self) -> &mut Self {
        self.out.push(0);
        self.last.pop();
        self
    }

    pub fn int(&mut self, id: i16, v: i64) -> &mut Self {
        self.field(id, if i32::try_from(v).is_ok() { I32 } else { I64 });
        self.varint(((v << 1) ^ (v >> 63)) as u64);
        self
    }

    pub fn long(&mut self, id: i16, v: i64) -> &mut Self {
        self.field(id, I64);
        self.varint(((v << 1) ^ (v >> 63)) as u64);
        self
    }

    pub fn string(&mut self, id: i16, s: &[u8]) -> &mut Self {
        self.field(id, BINARY);
        self.varint(s.len() as u64);
        self.out.extend_from_slice(s);
        self
    }

    /// A list field header declaring `n` elements of type `ty`.
    pub fn list(&mut self, id: i16, n: u64, ty: u8) -> &mut Self {
        self.field(id, LIST);
        if n < 15 {
            self.out.push(((n as u8) << 4) | ty);
        } else {
            self.out.push(0xf0 | ty);
            self.varint(n);
        }
        self
    }

    pub fn structs(&mut self, id: i16, n: u64) -> &mut Self {
        self.list(id, n, STRUCT)
    }

    pub fn field_struct(&mut self, id: i16) -> &mut Self {
        self.field(id, STRUCT);
        self.begin()
    }
}

/// A file around a footer: `PAR1`, `data`, the footer, its length, `PAR1`.
pub fn file_with_footer(data: &[u8], footer: &[u8]) -> Vec<u8> {
    let mut f = b"PAR1".to_vec();
    f.extend_from_slice(data);
    f.extend_from_slice(footer);
    f.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    f.extend_from_slice(b"PAR1");
    f
}

/// A schema of one int64 column (`ts_ns`) under the root.
fn one_column_schema(t: &mut Thrift) {
    t.structs(2, 2);
    t.begin().string(4, b"schema").int(5, 1).end();
    t.begin().int(1, 2).int(3, 0).string(4, b"ts_ns").end();
}

/// The 49-byte upload that once made the collector allocate 200 GB: a
/// footer declaring 2³¹−1 row groups.
pub fn row_group_bomb() -> Vec<u8> {
    let mut t = Thrift::default();
    t.begin().int(1, 1);
    one_column_schema(&mut t);
    t.long(3, 0).structs(4, (1 << 31) - 1);
    t.out.push(0);
    file_with_footer(&[], &t.out)
}

/// A schema nesting `depth` groups (500 once overflowed the stack).
pub fn schema_depth_bomb(depth: usize) -> Vec<u8> {
    let mut t = Thrift::default();
    t.begin().int(1, 1).structs(2, depth as u64 + 1);
    t.begin().string(4, b"schema").int(5, 1).end();
    for _ in 1..depth {
        t.begin().int(3, 0).string(4, b"g").int(5, 1).end();
    }
    t.begin().int(1, 2).int(3, 0).string(4, b"ts_ns").end();
    t.long(3, 0).structs(4, 0).end();
    file_with_footer(&[], &t.out)
}

/// A file whose last 8 bytes declare a footer of `declared` bytes.
pub fn footer_length(declared: u32) -> Vec<u8> {
    let mut f = b"PAR1".to_vec();
    f.extend_from_slice(&[0u8; 16]);
    f.extend_from_slice(&declared.to_le_bytes());
    f.extend_from_slice(b"PAR1");
    f
}

/// One column chunk holding one page whose header declares `page_uncompressed`
/// bytes, while the column chunk declares `chunk_uncompressed`: the
/// shape of a small upload carrying one huge compressed value.
pub fn page_size_bomb(chunk_uncompressed: i64, page_uncompressed: i32) -> Vec<u8> {
    let payload = [0u8; 32];
    let mut page = Thrift::default();
    page.begin().int(1, 0).int(2, i64::from(page_uncompressed)).int(3, payload.len() as i64).end();
    let mut data = page.out.clone();
    data.extend_from_slice(&payload);
    let mut t = Thrift::default();
    t.begin().int(1, 1);
    one_column_schema(&mut t);
    t.long(3, 1).structs(4, 1);
    t.begin().structs(1, 1);
    t.begin().long(2, 4).field_struct(3);
    t.int(1, 2).list(2, 1, I32);
    t.out.push(0);
    t.list(3, 1, BINARY);
    t.out.extend_from_slice(&[5, b't', b's', b'_', b'n', b's']);
    t.int(4, 6).long(5, 1).long(6, chunk_uncompressed).long(7, data.len() as i64).long(9, 4);
    t.end().end();
    t.long(2, chunk_uncompressed).long(3, 1).end();
    t.end();
    file_with_footer(&data, &t.out)
}
