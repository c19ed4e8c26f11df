//! The log the test programs print, one line per call, and how a captured
//! row is held against it. Shared by the tests (`#[path]`-included).
#![allow(dead_code)]

use std::collections::HashMap;

use strand_schemas::clock::MonoToUtc;

/// One logged call: `C key=value...` (NCCL) or `S key=value...` (CUDA sync).
#[derive(Debug, Clone)]
pub struct Logged {
    pub kind: char,
    pub kv: HashMap<String, String>,
}

impl Logged {
    pub fn parse(lines: &[String]) -> Vec<Logged> {
        lines
            .iter()
            .filter(|l| l.starts_with("C ") || l.starts_with("S "))
            .map(|l| Logged {
                kind: l.chars().next().unwrap_or(' '),
                kv: l[2..]
                    .split_whitespace()
                    .filter_map(|f| f.split_once('='))
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            })
            .collect()
    }
    pub fn s(&self, k: &str) -> &str {
        self.kv.get(k).map(String::as_str).unwrap_or_else(|| panic!("no {k} in {self:?}"))
    }
    pub fn i(&self, k: &str) -> i64 {
        self.s(k).parse().unwrap_or_else(|_| panic!("{k} not a number in {self:?}"))
    }
    pub fn opt_i(&self, k: &str) -> Option<i64> {
        self.kv.contains_key(k).then(|| self.i(k))
    }
    pub fn ptr(&self, k: &str) -> u64 {
        match self.s(k) {
            "(nil)" => 0,
            v => u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{k} not hex")),
        }
    }
}

pub fn dtype(code: i64) -> (&'static str, i64) {
    match code {
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
        other => panic!("test uses no datatype {other}"),
    }
}

pub fn redop(code: i64) -> String {
    ["sum", "prod", "max", "min", "avg"][code as usize].to_string()
}

/// Checks that a captured time lies inside the logged call.
pub fn check_time(clock: &MonoToUtc, captured_utc: i64, t0: i64, t1: i64, what: &str) {
    const SLACK: i64 = 5_000_000;
    let mono = clock.to_monotonic(captured_utc);
    assert!(mono >= t0 - SLACK && mono <= t1 + SLACK, "{what}: {mono} outside [{t0}, {t1}]");
}
