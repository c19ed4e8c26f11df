//! Splits one large JSON object read from a stream into its top-level
//! values and, for one key holding an array, that array's elements — one at
//! a time, each as a byte slice for `serde_json::from_slice`. A Kineto trace
//! is such an object (`traceEvents` is the large array), so a trace of any
//! size is parsed holding one event and one read chunk, at `from_slice`
//! speed (borrowed strings, no per-byte reader calls).
//!
//! The splitter checks structure only (brackets, strings, separators);
//! `serde_json` checks each value. Positions are 1-based lines and columns
//! of the whole input, for error messages.

use std::io::{self, Read};

/// Bytes read from the source at a time.
const CHUNK: usize = 256 * 1024;

/// Where a value starts in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug)]
pub enum SplitError<E> {
    Io(io::Error),
    /// The input ended inside the object.
    Truncated(Pos),
    Syntax(Pos, String),
    /// The first value is not an object.
    NotObject(Pos),
    /// A callback refused a value.
    Callback(E),
    /// One value (starting at `Pos`) is longer than the limit, in bytes.
    TooLarge(Pos, usize),
}

/// The longest single value (an event, a top-level value) kept by default.
pub const DEFAULT_MAX_VALUE: usize = 64 << 20;

/// Resumable scan of one JSON value (its first byte at offset 0).
#[derive(Default)]
struct Scan {
    rel: usize,
    depth: u32,
    in_str: bool,
}

impl Scan {
    /// Length of the value when `bytes` holds all of it.
    fn step(&mut self, bytes: &[u8], eof: bool) -> Option<usize> {
        let first = *bytes.first()?;
        match first {
            b'{' | b'[' | b'"' => {
                let mut i = self.rel;
                loop {
                    if self.in_str {
                        // To the next quote or backslash.
                        let n = memchr::memchr2(b'"', b'\\', &bytes[i..])?;
                        i += n;
                        if bytes[i] == b'\\' {
                            if i + 1 >= bytes.len() {
                                self.rel = i;
                                return None;
                            }
                            i += 2;
                            self.rel = i;
                            continue;
                        }
                        self.in_str = false;
                        i += 1;
                        self.rel = i;
                        if self.depth == 0 {
                            return Some(i);
                        }
                        continue;
                    }
                    // To the next quote or bracket: objects and arrays by the
                    // opening byte's kind, the other kind cannot unbalance a
                    // well-formed value (serde_json checks that afterwards).
                    let (open, close) = if first == b'[' { (b'[', b']') } else { (b'{', b'}') };
                    let Some(n) = memchr::memchr3(b'"', open, close, &bytes[i..]) else {
                        self.rel = bytes.len();
                        return None;
                    };
                    i += n;
                    match bytes[i] {
                        b'"' => self.in_str = true,
                        c if c == open => self.depth += 1,
                        _ => {
                            self.depth = self.depth.saturating_sub(1);
                            if self.depth == 0 {
                                return Some(i + 1);
                            }
                        }
                    }
                    i += 1;
                    self.rel = i;
                }
            }
            _ => {
                // A number, true, false or null: up to the next delimiter.
                let from = self.rel;
                match bytes[from..].iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                {
                    Some(n) => Some(from + n),
                    None if eof => Some(bytes.len()),
                    None => {
                        self.rel = bytes.len();
                        None
                    }
                }
            }
        }
    }
}

pub struct Splitter<R: Read> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// Absolute offset of `buf[0]`.
    base: u64,
    line: usize,
    /// Absolute offset of the start of the current line.
    line_start: u64,
    /// The block scan may use AVX2 and carry-less multiplication (detected).
    avx2: bool,
    /// The most bytes one value may take: memory stays bounded whatever the
    /// input holds (a gzip bomb of one huge string).
    max_value: usize,
}

impl<R: Read> Splitter<R> {
    pub fn new(src: R) -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("pclmulqdq");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        Self {
            src,
            buf: Vec::with_capacity(2 * CHUNK),
            pos: 0,
            eof: false,
            base: 0,
            line: 1,
            line_start: 0,
            avx2,
            max_value: DEFAULT_MAX_VALUE,
        }
    }

    /// Refuses any value longer than `bytes` ([`SplitError::TooLarge`]).
    pub fn with_max_value(mut self, bytes: usize) -> Self {
        self.max_value = bytes.max(1);
        self
    }

    /// The block scan without AVX2 (tests run both scans).
    #[cfg(test)]
    fn portable(mut self) -> Self {
        self.avx2 = false;
        self
    }

    fn here(&self) -> Pos {
        Pos { line: self.line, column: (self.base + self.pos as u64 - self.line_start) as usize + 1 }
    }

    /// Reads more input; false at the end.
    fn fill<E>(&mut self) -> Result<bool, SplitError<E>> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        // What is kept is the value being scanned (from `pos`): past the
        // limit it is refused instead of read on.
        if self.buf.len() > self.max_value {
            return Err(SplitError::TooLarge(self.here(), self.max_value));
        }
        // Read until the chunk is full (a decompressor returns a little at
        // a time; zeroing a chunk per small read cost more than the scan).
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        let mut n = 0;
        while n < CHUNK {
            match self.src.read(&mut self.buf[len + n..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(got) => n += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(SplitError::Io(e));
                }
            }
        }
        self.buf.truncate(len + n);
        Ok(n > 0)
    }

    fn advance(&mut self, to: usize) {
        let region = &self.buf[self.pos..to];
        let lines = memchr::memchr_iter(b'\n', region).count();
        if lines > 0 {
            self.line += lines;
            let last = memchr::memrchr(b'\n', region).unwrap_or(0);
            self.line_start = self.base + (self.pos + last) as u64 + 1;
        }
        self.pos = to;
    }

    /// The next non-whitespace byte (not consumed); `None` at the end.
    fn peek<E>(&mut self) -> Result<Option<u8>, SplitError<E>> {
        loop {
            while self.pos < self.buf.len() {
                let c = self.buf[self.pos];
                if is_space(c) {
                    self.advance(self.pos + 1);
                } else {
                    return Ok(Some(c));
                }
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Scans the value starting at `pos`; returns its end offset in `buf`.
    fn value<E>(&mut self) -> Result<usize, SplitError<E>> {
        let mut scan = Scan::default();
        loop {
            if let Some(n) = scan.step(&self.buf[self.pos..], self.eof) {
                return Ok(self.pos + n);
            }
            if !self.fill()? {
                return Err(SplitError::Truncated(self.here()));
            }
        }
    }

    fn expect_after_value<E>(&mut self, close: u8) -> Result<bool, SplitError<E>> {
        match self.peek()? {
            Some(b',') => {
                self.advance(self.pos + 1);
                Ok(true)
            }
            Some(c) if c == close => {
                self.advance(self.pos + 1);
                Ok(false)
            }
            Some(c) => Err(SplitError::Syntax(
                self.here(),
                format!("expected `,` or `{}`, found `{}`", close as char, c as char),
            )),
            None => Err(SplitError::Truncated(self.here())),
        }
    }

    /// Walks the object: `on_value(key, bytes, pos)` for every top-level
    /// value except the array under `array_key`, whose elements go to
    /// `on_element(index, bytes, pos)` one by one. Returns whether that
    /// array was there.
    pub fn run<E>(
        &mut self,
        array_key: &str,
        mut on_value: impl FnMut(&str, &[u8], Pos) -> Result<(), E>,
        mut on_element: impl FnMut(usize, &[u8], Pos) -> Result<(), E>,
    ) -> Result<bool, SplitError<E>> {
        let mut found = false;
        match self.peek()? {
            Some(b'{') => self.advance(self.pos + 1),
            Some(_) => return Err(SplitError::NotObject(self.here())),
            None => return Err(SplitError::Truncated(self.here())),
        }
        if self.peek()? == Some(b'}') {
            self.advance(self.pos + 1);
        } else {
            loop {
                let key_pos = self.here();
                match self.peek()? {
                    Some(b'"') => {}
                    Some(c) => {
                        return Err(SplitError::Syntax(key_pos, format!("expected a key, found `{}`", c as char)));
                    }
                    None => return Err(SplitError::Truncated(key_pos)),
                }
                let end = self.value()?;
                let key: String = serde_json::from_slice(&self.buf[self.pos..end])
                    .map_err(|e| SplitError::Syntax(key_pos, format!("bad key: {e}")))?;
                self.advance(end);
                match self.peek()? {
                    Some(b':') => self.advance(self.pos + 1),
                    Some(c) => {
                        return Err(SplitError::Syntax(self.here(), format!("expected `:`, found `{}`", c as char)));
                    }
                    None => return Err(SplitError::Truncated(self.here())),
                }
                let Some(first) = self.peek()? else { return Err(SplitError::Truncated(self.here())) };
                if key == array_key && first == b'[' {
                    found = true;
                    self.advance(self.pos + 1);
                    self.elements(&mut on_element)?;
                } else {
                    let at = self.here();
                    let end = self.value()?;
                    on_value(&key, &self.buf[self.pos..end], at).map_err(SplitError::Callback)?;
                    self.advance(end);
                }
                if !self.expect_after_value(b'}')? {
                    break;
                }
            }
        }
        match self.peek()? {
            None => Ok(found),
            Some(c) => Err(SplitError::Syntax(self.here(), format!("trailing `{}` after the object", c as char))),
        }
    }
}

/// Bit masks of one 64-byte block, bit i for byte i (simdjson's stage 1).
#[derive(Default, Clone, Copy)]
struct Masks {
    quote: u64,
    backslash: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
    comma: u64,
    newline: u64,
}

/// Classifies a block: SSE2 (every x86-64 has it), else a plain loop.
#[inline(always)]
fn classify(block: &[u8; 64]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline; the loads read 4 × 16
        // bytes inside `block`.
        unsafe {
            let p = block.as_ptr();
            let l = [
                _mm_loadu_si128(p.cast()),
                _mm_loadu_si128(p.add(16).cast()),
                _mm_loadu_si128(p.add(32).cast()),
                _mm_loadu_si128(p.add(48).cast()),
            ];
            // `[` (0x5b) and `{` (0x7b) differ only in bit 0x20, as do `]` and `}`.
            let b20 = _mm_set1_epi8(0x20);
            let low =
                [_mm_or_si128(l[0], b20), _mm_or_si128(l[1], b20), _mm_or_si128(l[2], b20), _mm_or_si128(l[3], b20)];
            #[inline(always)]
            fn eq(l: &[__m128i; 4], c: u8) -> u64 {
                // SAFETY: SSE2 is part of the x86-64 baseline.
                unsafe {
                    let c = _mm_set1_epi8(c as i8);
                    let m = |x: __m128i| _mm_movemask_epi8(_mm_cmpeq_epi8(x, c)) as u16 as u64;
                    m(l[0]) | m(l[1]) << 16 | m(l[2]) << 32 | m(l[3]) << 48
                }
            }
            Masks {
                quote: eq(&l, b'"'),
                backslash: eq(&l, b'\\'),
                open: eq(&low, b'{'),
                close: eq(&low, b'}'),
                comma: eq(&l, b','),
                newline: eq(&l, b'\n'),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = Masks::default();
        for (i, &c) in block.iter().enumerate() {
            let bit = 1u64 << i;
            match c {
                b'"' => m.quote |= bit,
                b'\\' => m.backslash |= bit,
                b'{' | b'[' => m.open |= bit,
                b'}' | b']' => m.close |= bit,
                b',' => m.comma |= bit,
                b'\n' => m.newline |= bit,
                _ => {}
            }
        }
        m
    }
}

/// [`classify`], or [`classify_avx2`] inside [`Splitter::elements_avx2`].
#[inline(always)]
fn block_masks<const AVX2: bool>(block: &[u8; 64]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: AVX2 is only asked for by `elements_avx2`, run after detection.
        return unsafe { classify_avx2(block) };
    }
    classify(block)
}

/// [`prefix_xor`], or one carry-less multiplication inside [`Splitter::elements_avx2`].
#[inline(always)]
fn string_bits<const CLMUL: bool>(quote: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if CLMUL {
        // SAFETY: as for `block_masks`.
        return unsafe { prefix_xor_clmul(quote) };
    }
    prefix_xor(quote)
}

/// [`classify`] in two 32-byte halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn classify_avx2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let p = block.as_ptr();
    // SAFETY: two unaligned 32-byte loads inside `block`.
    let (l0, l1) = unsafe { (_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(32).cast())) };
    let b20 = _mm256_set1_epi8(0x20);
    let (w0, w1) = (_mm256_or_si256(l0, b20), _mm256_or_si256(l1, b20));
    macro_rules! eq {
        ($a:expr, $b:expr, $c:expr) => {{
            let c = _mm256_set1_epi8($c as i8);
            (_mm256_movemask_epi8(_mm256_cmpeq_epi8($a, c)) as u32 as u64)
                | (_mm256_movemask_epi8(_mm256_cmpeq_epi8($b, c)) as u32 as u64) << 32
        }};
    }
    Masks {
        quote: eq!(l0, l1, b'"'),
        backslash: eq!(l0, l1, b'\\'),
        open: eq!(w0, w1, b'{'),
        close: eq!(w0, w1, b'}'),
        comma: eq!(l0, l1, b','),
        newline: eq!(l0, l1, b'\n'),
    }
}

/// [`prefix_xor`] as a carry-less product with all ones (simdjson's way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
#[inline]
unsafe fn prefix_xor_clmul(x: u64) -> u64 {
    use std::arch::x86_64::*;
    _mm_cvtsi128_si64(_mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0)) as u64
}

/// Bits of the bytes escaped by a backslash; `next` carries an escape that
/// runs into the next block (simdjson's branch-free escape scanner).
#[inline(always)]
fn escaped(backslash: u64, next: &mut u64) -> u64 {
    const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    if backslash == 0 {
        return std::mem::take(next);
    }
    let potential = backslash & !*next;
    let maybe = potential << 1;
    let codes = ((maybe | ODD).wrapping_sub(potential)) ^ ODD;
    let escaped = codes ^ (backslash | *next);
    *next = (codes & backslash) >> 63;
    escaped
}

/// Each bit set from an odd-numbered quote up to (not including) the next.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Line bookkeeping of the block scan: the line and the offset of the line's
/// first byte at the start of the block.
#[derive(Clone, Copy)]
struct Lines {
    line: usize,
    line_start: u64,
}

impl Lines {
    /// The position of bit `k` of a block at absolute offset `at` whose newlines are `nl`.
    #[inline(always)]
    fn at(self, at: u64, nl: u64, k: u32) -> Pos {
        let below = if k >= 64 { nl } else { nl & ((1u64 << k) - 1) };
        let line_start = if below == 0 { self.line_start } else { at + (64 - below.leading_zeros()) as u64 };
        Pos { line: self.line + below.count_ones() as usize, column: (at + k as u64 - line_start) as usize + 1 }
    }

    fn after_block(&mut self, at: u64, nl: u64) {
        if nl != 0 {
            self.line += nl.count_ones() as usize;
            self.line_start = at + (64 - nl.leading_zeros()) as u64;
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl<R: Read> Splitter<R> {
    /// The elements of the array whose `[` was just consumed, up to and
    /// including its `]`. One pass over the bytes in 64-byte blocks: quotes,
    /// escapes and brackets become bit masks, strings are masked out by a
    /// prefix XOR, and only the remaining brackets and commas are visited.
    /// Elements are checked for structure here and by `serde_json` when parsed.
    fn elements<E>(
        &mut self,
        on_element: &mut impl FnMut(usize, &[u8], Pos) -> Result<(), E>,
    ) -> Result<(), SplitError<E>> {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is set only where both features were detected.
            return unsafe { self.elements_avx2(on_element) };
        }
        self.elements_with::<false, E>(on_element)
    }

    /// [`Self::elements`] compiled for AVX2 and carry-less multiplication.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,pclmulqdq")]
    unsafe fn elements_avx2<E>(
        &mut self,
        on_element: &mut impl FnMut(usize, &[u8], Pos) -> Result<(), E>,
    ) -> Result<(), SplitError<E>> {
        self.elements_with::<true, E>(on_element)
    }

    #[inline(always)]
    fn elements_with<const AVX2: bool, E>(
        &mut self,
        on_element: &mut impl FnMut(usize, &[u8], Pos) -> Result<(), E>,
    ) -> Result<(), SplitError<E>> {
        let mut lines = Lines { line: self.line, line_start: self.line_start };
        // Block cursor and the carries between blocks.
        let mut cur = self.pos;
        let mut next_escaped = 0u64;
        let mut in_string = 0u64;
        let mut depth = 0u32;
        // The current element: where its region began (after `[` or `,`), its
        // first byte and position, and where its bracketed value closed.
        let mut from = self.pos;
        let mut start: Option<(usize, Pos)> = None;
        let mut closed: Option<usize> = None;
        let mut index = 0usize;
        let mut pad = [b' '; 64];
        loop {
            if cur + 64 > self.buf.len() && !self.eof {
                // Keep the current element's bytes; indices move down by what is dropped.
                self.pos = from;
                self.fill()?;
                let shift = from;
                cur -= shift;
                from = 0;
                start = start.map(|(s, p)| (s - shift, p));
                closed = closed.map(|c| c - shift);
                continue;
            }
            let avail = self.buf.len() - cur;
            if avail == 0 {
                self.pos = self.buf.len();
                return Err(SplitError::Truncated(lines.at(self.base + cur as u64, 0, 0)));
            }
            let block: &[u8; 64] = if avail >= 64 {
                self.buf[cur..cur + 64].try_into().expect("64 bytes")
            } else {
                // The end of the input: once, padded with spaces.
                pad[..avail].copy_from_slice(&self.buf[cur..]);
                &pad
            };
            let m = block_masks::<AVX2>(block);
            let at = self.base + cur as u64;
            let quote = m.quote & !escaped(m.backslash, &mut next_escaped);
            let strings = string_bits::<AVX2>(quote) ^ in_string;
            in_string = ((strings as i64) >> 63) as u64;
            // The first byte of an element not yet found: the first non-space.
            if start.is_none() {
                let lo = from.max(cur);
                if let Some(i) = self.buf[lo..cur + avail.min(64)].iter().position(|&c| !is_space(c)) {
                    let k = (lo - cur + i) as u32;
                    start = Some((lo + i, lines.at(at, m.newline, k)));
                }
            }
            // Brackets, and the commas outside them: the commas inside an
            // element (a dozen per Kineto event) are never visited.
            let commas = m.comma & !strings;
            let mut rest = ((m.open | m.close) & !strings) | commas;
            loop {
                let candidates = if depth == 0 { rest } else { rest & !commas };
                if candidates == 0 {
                    break;
                }
                let k = candidates.trailing_zeros();
                rest &= u64::MAX.checked_shl(k + 1).unwrap_or(0);
                let i = cur + k as usize;
                let bit = 1u64 << k;
                if m.open & bit != 0 {
                    if depth == 0 && closed.is_some() {
                        return Err(self.after_value(i, ']', lines.at(at, m.newline, k)));
                    }
                    depth += 1;
                } else if m.close & bit != 0 {
                    if depth > 0 {
                        depth -= 1;
                        if depth == 0 {
                            closed = Some(i);
                        }
                        continue;
                    }
                    // The array's own end.
                    let c = self.buf[i];
                    if c != b']' {
                        return Err(self.after_value(i, ']', lines.at(at, m.newline, k)));
                    }
                    if start.is_some_and(|(s, _)| s < i) {
                        self.element(index, from, i, start, closed, lines.at(at, m.newline, k), on_element)?;
                    } else if index > 0 {
                        return Err(SplitError::Syntax(
                            lines.at(at, m.newline, k),
                            "expected a value, found `]`".into(),
                        ));
                    }
                    let end = lines.at(at, m.newline, k + 1);
                    self.pos = i + 1;
                    self.line = end.line;
                    self.line_start = self.base + self.pos as u64 + 1 - end.column as u64;
                    return Ok(());
                } else if depth == 0 {
                    // A comma between elements.
                    let here = lines.at(at, m.newline, k);
                    if start.is_none_or(|(s, _)| s >= i) {
                        return Err(SplitError::Syntax(here, "expected a value, found `,`".into()));
                    }
                    self.element(index, from, i, start, closed, here, on_element)?;
                    index += 1;
                    from = i + 1;
                    start = None;
                    closed = None;
                    // The next element may start in this block.
                    if let Some(j) = self.buf[i + 1..cur + avail.min(64)].iter().position(|&c| !is_space(c)) {
                        let kk = k + 1 + j as u32;
                        start = Some((i + 1 + j, lines.at(at, m.newline, kk)));
                    }
                }
            }
            lines.after_block(at, if avail >= 64 { m.newline } else { m.newline & ((1u64 << avail) - 1) });
            cur += avail.min(64);
        }
    }

    /// Hands one element (`from..to`, spaces trimmed) to the callback, after
    /// checking that a bracketed value is all of it.
    #[allow(clippy::too_many_arguments)]
    fn element<E>(
        &mut self,
        index: usize,
        from: usize,
        to: usize,
        start: Option<(usize, Pos)>,
        closed: Option<usize>,
        sep: Pos,
        on_element: &mut impl FnMut(usize, &[u8], Pos) -> Result<(), E>,
    ) -> Result<(), SplitError<E>> {
        let (s, at) = start.unwrap_or((from, sep));
        let mut e = to;
        while e > s && is_space(self.buf[e - 1]) {
            e -= 1;
        }
        if matches!(self.buf[s], b'{' | b'[') {
            match closed {
                Some(c) if c + 1 == e => {}
                Some(c) => {
                    let found = self.buf[c + 1..e].iter().position(|&b| !is_space(b)).map_or(c + 1, |j| c + 1 + j);
                    return Err(self.after_value(found, ']', self.pos_from(s, at, found)));
                }
                None => return Err(SplitError::Syntax(at, "unbalanced brackets in this value".into())),
            }
        }
        on_element(index, &self.buf[s..e], at).map_err(SplitError::Callback)
    }

    /// The position of buffer index `i`, counted from index `s` at `at`
    /// (error paths only).
    fn pos_from(&self, s: usize, at: Pos, i: usize) -> Pos {
        let region = &self.buf[s..i];
        match memchr::memrchr(b'\n', region) {
            Some(last) => Pos { line: at.line + memchr::memchr_iter(b'\n', region).count(), column: i - (s + last) },
            None => Pos { line: at.line, column: at.column + (i - s) },
        }
    }

    /// "expected `,` or `]`" at buffer index `i`.
    fn after_value<E>(&self, i: usize, close: char, at: Pos) -> SplitError<E> {
        SplitError::Syntax(at, format!("expected `,` or `{close}`, found `{}`", self.buf[i] as char))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns one byte at a time: every value crosses reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    type Found = (Vec<(String, String)>, Vec<(usize, String, Pos)>);

    fn split(input: &str, trickle: bool) -> Result<Found, SplitError<()>> {
        let mut values = Vec::new();
        let mut elements = Vec::new();
        let r: Box<dyn Read> = if trickle { Box::new(Trickle(input.as_bytes())) } else { Box::new(input.as_bytes()) };
        let _found = Splitter::new(r).run(
            "events",
            |k, v, _| {
                values.push((k.to_string(), String::from_utf8_lossy(v).into_owned()));
                Ok(())
            },
            |i, v, p| {
                elements.push((i, String::from_utf8_lossy(v).into_owned(), p));
                Ok(())
            },
        )?;
        Ok((values, elements))
    }

    #[test]
    fn values_and_elements_come_out_whole_whatever_the_read_sizes() {
        let input = "{\"a\": 1, \"b\\\"q\": {\"x\": [1, \"]}\"]},\n \"events\": [ {\"s\": \"a\\\\\\\"}\"}, [2,3] ,\n4, \"e\"],\"z\":null}\n";
        for trickle in [false, true] {
            let (values, elements) = split(input, trickle).unwrap();
            assert_eq!(
                values,
                vec![
                    ("a".into(), "1".into()),
                    ("b\"q".into(), "{\"x\": [1, \"]}\"]}".into()),
                    ("z".into(), "null".into())
                ]
            );
            let e: Vec<_> = elements.iter().map(|(i, v, _)| (*i, v.as_str())).collect();
            assert_eq!(e, vec![(0, "{\"s\": \"a\\\\\\\"}\"}"), (1, "[2,3]"), (2, "4"), (3, "\"e\"")]);
            assert_eq!(elements[2].2, Pos { line: 3, column: 1 });
        }
    }

    #[test]
    fn broken_input_is_reported_with_its_position() {
        for cut in ["{\"events\": [{\"a\": 1}", "{\"events\": [{\"a\": \"x", "{\"a\": 1, ", "{", ""] {
            assert!(matches!(split(cut, true), Err(SplitError::Truncated(_))), "{cut:?}");
        }
        assert!(matches!(split("[1]", false), Err(SplitError::NotObject(_))));
        match split("{\"a\": 1\n \"b\": 2}", false) {
            Err(SplitError::Syntax(p, m)) => {
                assert_eq!((p, m.as_str()), (Pos { line: 2, column: 2 }, "expected `,` or `}`, found `\"`"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(split("{} x", false), Err(SplitError::Syntax(..))));
        assert!(split("{}", false).unwrap().0.is_empty());
    }

    /// Element start offsets by a plain byte-at-a-time walk: the reference
    /// for the block scanner.
    fn reference_starts(text: &[u8], array_at: usize) -> Vec<usize> {
        let (mut depth, mut in_str, mut esc) = (0u32, false, false);
        let mut starts = Vec::new();
        let mut want = true;
        for (i, &c) in text.iter().enumerate().skip(array_at + 1) {
            if in_str {
                if esc {
                    esc = false;
                } else if c == b'\\' {
                    esc = true;
                } else if c == b'"' {
                    in_str = false;
                }
                continue;
            }
            if want && !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                if depth == 0 && c == b']' {
                    break;
                }
                starts.push(i);
                want = false;
            }
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => break,
                b'}' | b']' => depth -= 1,
                b',' if depth == 0 => want = true,
                _ => {}
            }
        }
        starts
    }

    fn pos_of(text: &[u8], i: usize) -> Pos {
        let before = &text[..i];
        let line_start = before.iter().rposition(|&c| c == b'\n').map_or(0, |n| n + 1);
        Pos { line: 1 + before.iter().filter(|&&c| c == b'\n').count(), column: i - line_start + 1 }
    }

    /// A reader handing out the input in the given chunk sizes, cycling.
    struct Chunks<'a>(&'a [u8], Vec<usize>, usize);

    impl Read for Chunks<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let want = self.1[self.2 % self.1.len()].max(1);
            self.2 += 1;
            let n = want.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        // Strings full of what confuses a splitter: quotes, backslash runs, brackets, commas, newlines.
        let text = || proptest::string::string_regex(r#"([\\"\[\]{},:\n ab]|\\\\|é){0,12}"#).expect("regex");
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            text().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(text(), inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever the values, the layout and the read sizes, the block
        /// scanner hands out exactly the array's elements, at the positions
        /// a byte-at-a-time walk finds.
        #[test]
        fn the_block_scanner_splits_any_array_like_a_plain_walk(
            values in proptest::collection::vec(json_value(), 0..40),
            pretty in proptest::bool::ANY,
            chunks in proptest::collection::vec(1usize..300, 1..6),
            simd in proptest::bool::ANY,
        ) {
            let events = serde_json::Value::Array(values.clone());
            let body = if pretty { serde_json::to_string_pretty(&events) } else { serde_json::to_string(&events) }.unwrap();
            let text = format!("{{\"a\": \"x]\\\\\", \"events\": {body},\n\"z\": 1}}");
            let array_at = text.find("\"events\": ").unwrap() + 10;
            let starts = reference_starts(text.as_bytes(), array_at);
            let mut got = Vec::new();
            let splitter = Splitter::new(Chunks(text.as_bytes(), chunks, 0));
            let found = if simd { splitter } else { splitter.portable() }.run(
                "events",
                |_, _, _| Ok::<(), ()>(()),
                |i, v, p| {
                    got.push((i, serde_json::from_slice::<serde_json::Value>(v).map_err(|_| ())?, p));
                    Ok(())
                },
            );
            proptest::prop_assert!(matches!(found, Ok(true)), "{:?}", found.err().map(|e| format!("{e:?}")));
            proptest::prop_assert_eq!(got.len(), values.len());
            for ((i, v, p), (want, &s)) in got.iter().zip(values.iter().zip(&starts)) {
                proptest::prop_assert_eq!(v, want, "element {}", i);
                proptest::prop_assert_eq!(*p, pos_of(text.as_bytes(), s), "element {}", i);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    proptest::proptest! {
        /// The AVX2 classifier and the carry-less prefix XOR give the same
        /// bits as the SSE2 classifier and the shift ladder.
        #[test]
        fn both_block_classifiers_agree(
            block in proptest::collection::vec(proptest::sample::select(b"{}[],:\"\\ \n\tab01".to_vec()), 64),
            x in proptest::num::u64::ANY,
        ) {
            if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("pclmulqdq")) {
                return Ok(());
            }
            let block: [u8; 64] = block.try_into().unwrap();
            let (a, b) = (classify(&block), block_masks::<true>(&block));
            proptest::prop_assert_eq!(
                (a.quote, a.backslash, a.open, a.close, a.comma, a.newline),
                (b.quote, b.backslash, b.open, b.close, b.comma, b.newline)
            );
            proptest::prop_assert_eq!(prefix_xor(x), string_bits::<true>(x));
        }
    }

    #[test]
    fn damaged_arrays_are_errors_at_the_damage() {
        let cases = [
            ("{\"events\": [{\"a\": 1} {\"b\": 2}]}", 1, 22, "expected `,` or `]`, found `{`"),
            ("{\"events\": [{\"a\": 1}\n  x, 2]}", 2, 3, "expected `,` or `]`, found `x`"),
            ("{\"events\": [1,, 2]}", 1, 15, "expected a value, found `,`"),
            ("{\"events\": [1, 2,\n]}", 2, 1, "expected a value, found `]`"),
            ("{\"events\": [{\"a\": 1}}]}", 1, 21, "expected `,` or `]`, found `}`"),
        ];
        for (input, line, column, message) in cases {
            for trickle in [false, true] {
                match split(input, trickle) {
                    Err(SplitError::Syntax(p, m)) => {
                        assert_eq!((p, m.as_str()), (Pos { line, column }, message), "{input:?}")
                    }
                    other => panic!("{input:?}: {other:?}"),
                }
            }
        }
        for cut in ["{\"events\": [{\"a\": \"]\\\"\"}, ", "{\"events\": [1, {\"a\": [2, 3]"] {
            assert!(matches!(split(cut, true), Err(SplitError::Truncated(_))), "{cut:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Damaged or hostile input is an error or a result, never a panic,
        /// whatever the read sizes (the splitter runs on users' files).
        #[test]
        fn arbitrary_bytes_never_panic(
            body in proptest::collection::vec(proptest::sample::select(b"{}[],:\"\\ \n\tab01e.-".to_vec()), 0..400),
            chunks in proptest::collection::vec(1usize..100, 1..4),
        ) {
            let mut input = b"{\"events\": [".to_vec();
            input.extend_from_slice(&body);
            for simd in [true, false] {
                let fresh = |b| { let s = Splitter::new(Chunks(b, chunks.clone(), 0)); if simd { s } else { s.portable() } };
                let _ = fresh(&input).run("events", |_, _, _| Ok::<(), ()>(()), |_, _, _| Ok(()));
                let _ = fresh(&body).run("events", |_, _, _| Ok::<(), ()>(()), |_, _, _| Ok(()));
            }
        }
    }
}
