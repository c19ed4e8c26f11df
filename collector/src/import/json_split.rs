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
}

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
                match bytes[from..].iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')) {
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
}

impl<R: Read> Splitter<R> {
    pub fn new(src: R) -> Self {
        Self { src, buf: Vec::with_capacity(2 * CHUNK), pos: 0, eof: false, base: 0, line: 1, line_start: 0 }
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
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        let n = loop {
            match self.src.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(SplitError::Io(e));
                }
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
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
                if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
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
            Some(c) => Err(SplitError::Syntax(self.here(), format!("expected `,` or `{}`, found `{}`", close as char, c as char))),
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
                    Some(c) => return Err(SplitError::Syntax(key_pos, format!("expected a key, found `{}`", c as char))),
                    None => return Err(SplitError::Truncated(key_pos)),
                }
                let end = self.value()?;
                let key: String = serde_json::from_slice(&self.buf[self.pos..end])
                    .map_err(|e| SplitError::Syntax(key_pos, format!("bad key: {e}")))?;
                self.advance(end);
                match self.peek()? {
                    Some(b':') => self.advance(self.pos + 1),
                    Some(c) => return Err(SplitError::Syntax(self.here(), format!("expected `:`, found `{}`", c as char))),
                    None => return Err(SplitError::Truncated(self.here())),
                }
                let Some(first) = self.peek()? else { return Err(SplitError::Truncated(self.here())) };
                if key == array_key && first == b'[' {
                    found = true;
                    self.advance(self.pos + 1);
                    let mut index = 0usize;
                    if self.peek()? == Some(b']') {
                        self.advance(self.pos + 1);
                    } else {
                        loop {
                            if self.peek()?.is_none() {
                                return Err(SplitError::Truncated(self.here()));
                            }
                            let at = self.here();
                            let end = self.value()?;
                            on_element(index, &self.buf[self.pos..end], at).map_err(SplitError::Callback)?;
                            self.advance(end);
                            index += 1;
                            if !self.expect_after_value(b']')? {
                                break;
                            }
                        }
                    }
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
            assert_eq!(values, vec![("a".into(), "1".into()), ("b\"q".into(), "{\"x\": [1, \"]}\"]}".into()), ("z".into(), "null".into())]);
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
            Err(SplitError::Syntax(p, m)) => assert_eq!((p, m.as_str()), (Pos { line: 2, column: 2 }, "expected `,` or `}`, found `\"`")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(split("{} x", false), Err(SplitError::Syntax(..))));
        assert!(split("{}", false).unwrap().0.is_empty());
    }
}
