//! The bounded Parquet reader: the one way strand opens a Parquet file it did
//! not write itself (an upload, a dataset file, an agent's data directory).
//!
//! The `parquet` crate trusts a file's metadata: a 49-byte footer declaring
//! 2³¹−1 row groups makes it allocate 200 GB before it notices the bytes are
//! not there, a schema nesting 500 groups overflows its recursive schema
//! builder, and a page declaring 1 GiB uncompressed is decompressed into a
//! 1 GiB buffer. So before the crate sees a byte, this module walks the
//! footer's Thrift encoding itself, allocating nothing in proportion to what
//! the file *claims*:
//!
//! - the footer length fits in the file and within [`ReadLimits::max_footer_bytes`];
//! - every list and string length fits in the bytes that remain of the footer;
//! - Thrift structs nest at most [`MAX_THRIFT_DEPTH`] deep, the schema tree at
//!   most [`ReadLimits::max_schema_depth`];
//! - at most [`ReadLimits::max_row_groups`] row groups and
//!   [`ReadLimits::max_columns`] columns, each row group with one chunk per
//!   column, each chunk inside the file;
//! - the declared uncompressed size of all column chunks is at most
//!   [`ReadLimits::max_decoded_bytes`].
//!
//! [`check_pages`] then walks the page headers of every column chunk (in the
//! data, not the footer) and sums the sizes that decoding will actually
//! allocate; the `parquet` crate refuses a page that decompresses to another
//! size than its header says, so decoding cannot go past that sum.
//! [`Budget::batch_rows`] sizes the decoder's batches so that one batch holds
//! at most [`ReadLimits::max_batch_bytes`] even when a dictionary repeats one
//! large value on every row.

use bytes::Bytes;
use parquet::file::reader::ChunkReader;

use crate::ReadError;

/// Thrift structs nested deeper than this are refused (strand's footers nest
/// at most 6 deep: file, row group, column chunk, metadata, statistics…).
pub const MAX_THRIFT_DEPTH: u32 = 16;

/// What a reader accepts from an untrusted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest footer (Parquet's Thrift `FileMetaData`), in bytes.
    pub max_footer_bytes: u64,
    /// Most row groups in one file.
    pub max_row_groups: u64,
    /// Most leaf columns in the schema.
    pub max_columns: u64,
    /// Deepest schema tree (a flat table is depth 1, a list column 3).
    pub max_schema_depth: u32,
    /// Largest total uncompressed size of all pages, as declared by the
    /// column chunks and then by the page headers.
    pub max_decoded_bytes: u64,
    /// Memory one decoded batch of rows may take at most.
    pub max_batch_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_footer_bytes: 16 << 20,
            max_row_groups: 100_000,
            max_columns: 10_000,
            max_schema_depth: 32,
            max_decoded_bytes: 512 << 20,
            max_batch_bytes: 64 << 20,
        }
    }
}

/// What the footer and page checks found: the memory that decoding the file
/// needs, to be charged to a memory budget before decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    /// Footer bytes.
    pub footer_bytes: u64,
    pub row_groups: u64,
    pub columns: u64,
    /// Sum of the column chunks' declared uncompressed sizes.
    pub declared_uncompressed: u64,
    /// Sum of the page headers' uncompressed sizes (after [`check_pages`]).
    pub page_uncompressed: u64,
    /// Largest uncompressed page (after [`check_pages`]).
    pub largest_page: u64,
    /// Largest uncompressed dictionary page (after [`check_pages`]): a bound
    /// on a value that a data page may repeat on every row for a few bytes.
    pub largest_dictionary: u64,
    /// The largest row group's sum of its columns' largest page and
    /// dictionary (after [`check_pages`]).
    pub row_group_pages: u64,
    chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    row_group: u64,
    start: u64,
    len: u64,
}

impl Budget {
    /// Rows per decoded batch so that a batch stays within `max_batch_bytes`
    /// even if every row repeats the largest dictionary value (at least 1, at
    /// most 8192). Plain values are bounded by the pages that hold them.
    pub fn batch_rows(&self, limits: &ReadLimits) -> usize {
        let per_row = self.largest_dictionary.max(1);
        usize::try_from(limits.max_batch_bytes / per_row).unwrap_or(usize::MAX).clamp(1, 8192)
    }

    /// Peak memory decoding needs (after [`check_pages`]): the footer
    /// decoded, one page (and the dictionary) of every column of the largest
    /// row group — the reader decompresses a page at a time — and one batch
    /// of rows.
    pub fn decode_bytes(&self, limits: &ReadLimits) -> u64 {
        self.decode_bytes_rows(limits, u64::MAX)
    }

    /// [`Budget::decode_bytes`] for a file of `rows` rows: a decoded batch
    /// holds at most that many.
    pub fn decode_bytes_rows(&self, limits: &ReadLimits, rows: u64) -> u64 {
        let rows = (self.batch_rows(limits) as u64).min(rows.max(1));
        let batch = rows.saturating_mul(self.largest_dictionary.max(64));
        self.footer_bytes
            .saturating_mul(8)
            .saturating_add(self.row_group_pages)
            .saturating_add(batch.min(limits.max_batch_bytes))
    }
}

fn refuse(file: &str, detail: impl Into<String>) -> ReadError {
    ReadError::Limit { file: file.to_string(), detail: detail.into() }
}

/// Checks the Parquet footer of a file of `file_len` bytes, given its last
/// `tail` bytes (at least 8; the whole footer is needed, see [`footer_len`]).
pub fn check_footer(name: &str, tail: &[u8], file_len: u64, limits: &ReadLimits) -> Result<Budget, ReadError> {
    let meta_len = footer_len(name, tail, file_len, limits)?;
    if (tail.len() as u64) < meta_len + 8 {
        return Err(refuse(name, "the footer was not read whole"));
    }
    let meta = &tail[tail.len() - 8 - meta_len as usize..tail.len() - 8];
    let data_end = file_len - 8 - meta_len;
    let mut walker = Walker { buf: meta, pos: 0, depth: 0, partial: false };
    let mut budget = walker.file_metadata(name, limits, data_end)?;
    budget.footer_bytes = meta_len;
    Ok(budget)
}

/// The footer length a file declares, checked against the file's length and
/// the limit. `tail` must hold the last 8 bytes at least; when it is shorter
/// than the footer the caller reads `footer_len + 8` bytes and calls
/// [`check_footer`] with them.
pub fn footer_len(name: &str, tail: &[u8], file_len: u64, limits: &ReadLimits) -> Result<u64, ReadError> {
    if file_len < 12 || tail.len() < 8 || &tail[tail.len() - 4..] != b"PAR1" {
        return Err(ReadError::NotParquet { file: name.to_string() });
    }
    let n = tail.len();
    let meta_len = u64::from(u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]));
    if meta_len + 12 > file_len {
        return Err(refuse(
            name,
            format!("the footer declares {meta_len} bytes of metadata, but the file has only {file_len} bytes"),
        ));
    }
    if meta_len > limits.max_footer_bytes {
        return Err(refuse(
            name,
            format!("the footer declares {meta_len} bytes of metadata, over the limit of {}", limits.max_footer_bytes),
        ));
    }
    Ok(meta_len)
}

/// Checks a whole file held in memory (an upload): the magic at both ends,
/// the footer, and the page headers of every column chunk.
pub fn check_bytes(name: &str, data: &Bytes, limits: &ReadLimits) -> Result<Budget, ReadError> {
    check_reader(name, data, limits)
}

/// Checks a file through a [`ChunkReader`] (a `File`, `Bytes`): reads the
/// tail, then the footer, then every page header.
pub fn check_reader<R: ChunkReader>(name: &str, reader: &R, limits: &ReadLimits) -> Result<Budget, ReadError> {
    let mut budget = check_reader_footer(name, reader, limits)?;
    check_pages(name, reader, &mut budget, limits)?;
    Ok(budget)
}

/// Checks only the footer through a [`ChunkReader`]: two small reads. For
/// readers (DataFusion) that decode in bounded batches under their own memory
/// pool and only need the metadata made safe.
pub fn check_reader_footer<R: ChunkReader>(name: &str, reader: &R, limits: &ReadLimits) -> Result<Budget, ReadError> {
    let file_len = reader.len();
    let parquet_err = |source| ReadError::Parquet { file: name.to_string(), source };
    if file_len < 12 {
        return Err(ReadError::NotParquet { file: name.to_string() });
    }
    let head = reader.get_bytes(0, 4).map_err(parquet_err)?;
    let tail = reader.get_bytes(file_len - 8, 8).map_err(parquet_err)?;
    if &head[..] != b"PAR1" {
        return Err(ReadError::NotParquet { file: name.to_string() });
    }
    let meta_len = footer_len(name, &tail, file_len, limits)?;
    let footer = reader.get_bytes(file_len - 8 - meta_len, meta_len as usize + 8).map_err(parquet_err)?;
    check_footer(name, &footer, file_len, limits)
}

/// Walks the page headers of every column chunk the footer listed: each page
/// lies inside its chunk, and the pages' uncompressed sizes add up to at most
/// `max_decoded_bytes`. Reads only the headers (a few hundred bytes per page).
pub fn check_pages<R: ChunkReader>(
    name: &str,
    reader: &R,
    budget: &mut Budget,
    limits: &ReadLimits,
) -> Result<(), ReadError> {
    let mut total = 0u64;
    let mut largest = 0u64;
    let mut largest_dictionary = 0u64;
    let (mut group, mut group_pages, mut row_group_pages) = (0u64, 0u64, 0u64);
    for chunk in &budget.chunks {
        if chunk.row_group != group {
            row_group_pages = row_group_pages.max(group_pages);
            (group, group_pages) = (chunk.row_group, 0);
        }
        let (mut chunk_page, mut chunk_dictionary) = (0u64, 0u64);
        let mut pos = chunk.start;
        let end = chunk.start + chunk.len;
        while pos < end {
            // A page header is small; statistics may make it larger, up to the footer limit.
            let cap = (end - pos).min(limits.max_footer_bytes);
            let mut want = cap.min(4096);
            let (page_len, uncompressed, dictionary) = loop {
                let header = reader
                    .get_bytes(pos, want as usize)
                    .map_err(|source| ReadError::Parquet { file: name.to_string(), source })?;
                let mut w = Walker { buf: &header, pos: 0, depth: 0, partial: true };
                match w.page_header() {
                    Ok((compressed, uncompressed, dictionary)) => {
                        break (w.pos as u64 + compressed, uncompressed, dictionary);
                    }
                    Err(Short) if want < cap => want = (want * 4).min(cap),
                    Err(Short) => {
                        return Err(refuse(name, format!("the page header at byte {pos} runs past its column chunk")));
                    }
                    Err(Bad(m)) => return Err(refuse(name, format!("page header at byte {pos}: {m}"))),
                }
            };
            if page_len > end - pos {
                return Err(refuse(name, format!("the page at byte {pos} runs past its column chunk")));
            }
            pos += page_len;
            total = total.saturating_add(uncompressed);
            largest = largest.max(uncompressed);
            if dictionary {
                largest_dictionary = largest_dictionary.max(uncompressed);
                chunk_dictionary = chunk_dictionary.max(uncompressed);
            } else {
                chunk_page = chunk_page.max(uncompressed);
            }
            if total > limits.max_decoded_bytes {
                return Err(ReadError::TooLarge {
                    file: name.to_string(),
                    detail: format!(
                        "its pages declare at least {total} bytes uncompressed, over the limit of {} bytes; nothing was decoded",
                        limits.max_decoded_bytes
                    ),
                });
            }
        }
        group_pages = group_pages.saturating_add(chunk_page).saturating_add(chunk_dictionary);
    }
    budget.row_group_pages = row_group_pages.max(group_pages);
    budget.page_uncompressed = total;
    budget.largest_page = largest;
    budget.largest_dictionary = largest_dictionary;
    Ok(())
}

/// Marks a walk error that is a size over the budget, not a malformed file.
const TOO_LARGE: &str = "\u{0}too large:";

/// Why a walk stopped: the bytes ran out (read more, or the file is cut), or
/// the encoding is wrong.
enum WalkError {
    Short,
    Bad(String),
}
use WalkError::{Bad, Short};

// Thrift compact protocol types.
const T_STOP: u8 = 0;
const T_TRUE: u8 = 1;
const T_FALSE: u8 = 2;
const T_BYTE: u8 = 3;
const T_I16: u8 = 4;
const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_DOUBLE: u8 = 7;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_SET: u8 = 10;
const T_MAP: u8 = 11;
const T_STRUCT: u8 = 12;

/// A Thrift compact-protocol reader that allocates nothing.
struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: u32,
    /// `buf` may be cut short (a page header read in a window): running out
    /// of bytes asks for more instead of failing.
    partial: bool,
}

impl Walker<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, WalkError> {
        let b = *self.buf.get(self.pos).ok_or(Short)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, WalkError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(Bad("a varint overflows 64 bits".into()));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Bad("a varint is longer than 10 bytes".into()))
    }

    fn zigzag(&mut self) -> Result<i64, WalkError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), WalkError> {
        if n > self.remaining() as u64 {
            return Err(Short);
        }
        self.pos += n as usize;
        Ok(())
    }

    /// A field header: `None` at the end of a struct.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, WalkError> {
        let b = self.byte()?;
        let ty = b & 0x0f;
        if ty == T_STOP {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| Bad("a field id overflows i16".into()))?
        } else {
            last.checked_add(i16::from(delta)).ok_or_else(|| Bad("a field id overflows i16".into()))?
        };
        *last = id;
        Ok(Some((id, ty)))
    }

    /// A list or set header: element count (checked against the bytes left:
    /// each element takes at least one byte, except booleans in a struct) and type.
    fn list(&mut self) -> Result<(u64, u8), WalkError> {
        let b = self.byte()?;
        let ty = b & 0x0f;
        let size = match b >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        if size > self.remaining() as u64 {
            if self.partial {
                return Err(Short);
            }
            return Err(Bad(format!(
                "a list declares {size} elements but only {} bytes of metadata remain",
                self.remaining()
            )));
        }
        Ok((size, ty))
    }

    fn enter(&mut self) -> Result<(), WalkError> {
        self.depth += 1;
        if self.depth > MAX_THRIFT_DEPTH {
            return Err(Bad(format!("structures nest deeper than {MAX_THRIFT_DEPTH} levels")));
        }
        Ok(())
    }

    fn skip(&mut self, ty: u8) -> Result<(), WalkError> {
        match ty {
            T_TRUE | T_FALSE => Ok(()),
            T_BYTE => self.byte().map(drop),
            T_I16 | T_I32 | T_I64 => self.varint().map(drop),
            T_DOUBLE => self.skip_bytes(8),
            T_BINARY => {
                let n = self.varint()?;
                if n > self.remaining() as u64 && !self.partial {
                    return Err(Bad(format!("a string declares {n} bytes but only {} remain", self.remaining())));
                }
                self.skip_bytes(n)
            }
            T_LIST | T_SET => {
                let (n, elem) = self.list()?;
                self.enter()?;
                for _ in 0..n {
                    self.skip_elem(elem)?;
                }
                self.depth -= 1;
                Ok(())
            }
            T_MAP => {
                let n = self.varint()?;
                if n > self.remaining() as u64 {
                    if self.partial {
                        return Err(Short);
                    }
                    return Err(Bad(format!("a map declares {n} entries but only {} bytes remain", self.remaining())));
                }
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                self.enter()?;
                for _ in 0..n {
                    self.skip_elem(kv >> 4)?;
                    self.skip_elem(kv & 0x0f)?;
                }
                self.depth -= 1;
                Ok(())
            }
            T_STRUCT => {
                self.enter()?;
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t)?;
                }
                self.depth -= 1;
                Ok(())
            }
            other => Err(Bad(format!("unknown Thrift type {other}"))),
        }
    }

    /// An element of a list: booleans take one byte there.
    fn skip_elem(&mut self, ty: u8) -> Result<(), WalkError> {
        if ty == T_TRUE || ty == T_FALSE {
            return self.byte().map(drop);
        }
        self.skip(ty)
    }

    fn int(&mut self, ty: u8, what: &str) -> Result<i64, WalkError> {
        match ty {
            T_BYTE => Ok(i64::from(self.byte()? as i8)),
            T_I16 | T_I32 | T_I64 => self.zigzag(),
            _ => Err(Bad(format!("{what} is not an integer"))),
        }
    }

    /// `PageHeader`: (compressed size, uncompressed size, is a dictionary page).
    fn page_header(&mut self) -> Result<(u64, u64, bool), WalkError> {
        let (mut compressed, mut uncompressed, mut kind) = (None, None, 0);
        self.enter()?;
        let mut last = 0;
        while let Some((id, ty)) = self.field(&mut last)? {
            match id {
                1 => kind = self.int(ty, "type")?,
                2 => uncompressed = Some(self.int(ty, "uncompressed_page_size")?),
                3 => compressed = Some(self.int(ty, "compressed_page_size")?),
                _ => self.skip(ty)?,
            }
        }
        self.depth -= 1;
        let size = |v: Option<i64>, what: &str| {
            v.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| Bad(format!("no valid {what}")))
        };
        // Page type 2 is DICTIONARY_PAGE.
        Ok((size(compressed, "compressed_page_size")?, size(uncompressed, "uncompressed_page_size")?, kind == 2))
    }

    /// `FileMetaData`.
    fn file_metadata(&mut self, file: &str, limits: &ReadLimits, data_end: u64) -> Result<Budget, ReadError> {
        let err = |e: WalkError, pos: usize| match e {
            Short => refuse(file, format!("the footer metadata ends early (at byte {pos})")),
            Bad(m) if m.starts_with(TOO_LARGE) => {
                ReadError::TooLarge { file: file.to_string(), detail: m[TOO_LARGE.len()..].to_string() }
            }
            Bad(m) => refuse(file, format!("footer metadata: {m}")),
        };
        let mut budget = Budget::default();
        let mut leaves = None;
        let mut last = 0;
        self.depth = 1;
        loop {
            let f = self.field(&mut last).map_err(|e| err(e, self.pos))?;
            let Some((id, ty)) = f else { break };
            let r = match (id, ty) {
                (2, T_LIST) => self.schema(limits).map(|n| leaves = Some(n)),
                (4, T_LIST) => {
                    let cols = leaves.ok_or_else(|| Bad("the row groups come before the schema".into()));
                    match cols {
                        Ok(cols) => self.row_groups(limits, cols, data_end, &mut budget),
                        Err(e) => Err(e),
                    }
                }
                _ => self.skip(ty),
            };
            r.map_err(|e| err(e, self.pos))?;
        }
        budget.columns = leaves.ok_or_else(|| refuse(file, "footer metadata: no schema"))?;
        Ok(budget)
    }

    /// The schema: a flattened tree of `SchemaElement`s. Returns the number
    /// of leaf columns; refuses a tree deeper than the limit.
    fn schema(&mut self, limits: &ReadLimits) -> Result<u64, WalkError> {
        let (n, ty) = self.list()?;
        if ty != T_STRUCT || n == 0 {
            return Err(Bad("the schema is not a list of elements".into()));
        }
        // Children still expected at each open level (the root first).
        let mut open: Vec<u64> = Vec::new();
        let mut leaves = 0u64;
        for i in 0..n {
            self.enter()?;
            let mut children = 0i64;
            let mut last = 0;
            while let Some((id, t)) = self.field(&mut last)? {
                if id == 5 {
                    children = self.int(t, "num_children")?;
                } else {
                    self.skip(t)?;
                }
            }
            self.depth -= 1;
            if i > 0 {
                match open.last_mut() {
                    Some(left) => *left -= 1,
                    None => return Err(Bad(format!("schema element {i} is outside the tree"))),
                }
            }
            let children = u64::try_from(children).map_err(|_| Bad("a negative num_children".into()))?;
            if children > n {
                return Err(Bad(format!("a schema element declares {children} children, the schema has {n} elements")));
            }
            if children > 0 {
                open.push(children);
                if open.len() as u64 > u64::from(limits.max_schema_depth) {
                    return Err(Bad(format!(
                        "the schema nests deeper than {} levels (limit max_schema_depth)",
                        limits.max_schema_depth
                    )));
                }
            } else if i > 0 {
                leaves += 1;
            }
            while open.last() == Some(&0) {
                open.pop();
            }
        }
        if !open.is_empty() {
            return Err(Bad("the schema tree declares more children than it has elements".into()));
        }
        if leaves == 0 {
            return Err(Bad("the schema has no columns".into()));
        }
        if leaves > limits.max_columns {
            return Err(Bad(format!("{leaves} columns, over the limit of {}", limits.max_columns)));
        }
        Ok(leaves)
    }

    fn row_groups(
        &mut self,
        limits: &ReadLimits,
        columns: u64,
        data_end: u64,
        b: &mut Budget,
    ) -> Result<(), WalkError> {
        let (n, ty) = self.list()?;
        if ty != T_STRUCT {
            return Err(Bad("row_groups is not a list of structs".into()));
        }
        if n > limits.max_row_groups {
            return Err(Bad(format!("{n} row groups, over the limit of {}", limits.max_row_groups)));
        }
        b.row_groups = n;
        b.chunks.reserve(usize::try_from(n.saturating_mul(columns).min(1 << 16)).unwrap_or(0));
        for g in 0..n {
            self.enter()?;
            let mut last = 0;
            while let Some((id, t)) = self.field(&mut last)? {
                if id == 1 && t == T_LIST {
                    let (cols, ct) = self.list()?;
                    if ct != T_STRUCT || cols != columns {
                        return Err(Bad(format!(
                            "row group {g} has {cols} column chunks, the schema {columns} columns"
                        )));
                    }
                    for _ in 0..cols {
                        let (mut chunk, declared) = self.column_chunk(data_end)?;
                        chunk.row_group = g;
                        b.declared_uncompressed = b.declared_uncompressed.saturating_add(declared);
                        if b.declared_uncompressed > limits.max_decoded_bytes {
                            return Err(Bad(format!(
                                "{TOO_LARGE}its column chunks declare more than {} bytes uncompressed, over the limit of {}",
                                b.declared_uncompressed, limits.max_decoded_bytes
                            )));
                        }
                        b.chunks.push(chunk);
                    }
                } else {
                    self.skip(t)?;
                }
            }
            self.depth -= 1;
        }
        Ok(())
    }

    fn column_chunk(&mut self, data_end: u64) -> Result<(Chunk, u64), WalkError> {
        self.enter()?;
        let mut chunk = None;
        let mut last = 0;
        while let Some((id, t)) = self.field(&mut last)? {
            match (id, t) {
                (1, _) => return Err(Bad("a column chunk lives in another file (file_path); not supported".into())),
                (3, T_STRUCT) => chunk = Some(self.column_meta(data_end)?),
                _ => self.skip(t)?,
            }
        }
        self.depth -= 1;
        chunk.ok_or_else(|| Bad("a column chunk has no metadata".into()))
    }

    /// `ColumnMetaData`: where the chunk lies, and its declared uncompressed size.
    fn column_meta(&mut self, data_end: u64) -> Result<(Chunk, u64), WalkError> {
        self.enter()?;
        let (mut uncompressed, mut compressed, mut data, mut dict) = (None, None, None, None);
        let mut last = 0;
        while let Some((id, t)) = self.field(&mut last)? {
            match id {
                6 => uncompressed = Some(self.int(t, "total_uncompressed_size")?),
                7 => compressed = Some(self.int(t, "total_compressed_size")?),
                9 => data = Some(self.int(t, "data_page_offset")?),
                11 => dict = Some(self.int(t, "dictionary_page_offset")?),
                _ => self.skip(t)?,
            }
        }
        self.depth -= 1;
        let nonneg = |v: Option<i64>, what: &str| {
            v.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| Bad(format!("a column chunk has no valid {what}")))
        };
        let uncompressed = nonneg(uncompressed, "total_uncompressed_size")?;
        let len = nonneg(compressed, "total_compressed_size")?;
        let data = nonneg(data, "data_page_offset")?;
        // Writers differ on whether a missing dictionary is absent or 0; a
        // negative one is damage (the Parquet reader asserts on it).
        if dict.is_some_and(|d| d < 0) {
            return Err(Bad("a column chunk has a negative dictionary_page_offset".into()));
        }
        let start = match dict.and_then(|d| u64::try_from(d).ok()).filter(|&d| d > 0) {
            Some(d) => d.min(data),
            None => data,
        };
        if start < 4 || start.checked_add(len).is_none_or(|end| end > data_end) {
            return Err(Bad(format!(
                "a column chunk at bytes {start}..+{len} lies outside the file's data (4..{data_end})"
            )));
        }
        Ok((Chunk { row_group: 0, start, len }, uncompressed))
    }
}
