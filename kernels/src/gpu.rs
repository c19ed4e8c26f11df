//! GPU backend (NVRTC through cudarc). Placeholder until the GPU
//! implementation lands: `open` reports it unavailable, so every caller uses
//! the CPU backend.

use crate::{Histogram, Intervals, KernelsError, LogBuckets, Stats, Values};

/// Smallest batch for which `Auto` picks the GPU (to be measured).
pub const AUTO_MIN_ROWS: usize = usize::MAX;

pub struct Gpu {
    _private: (),
}

fn unavailable<T>() -> Result<T, KernelsError> {
    Err(KernelsError::GpuUnavailable("this build has no GPU backend yet".into()))
}

impl Gpu {
    pub fn open() -> Result<Self, KernelsError> {
        unavailable()
    }
    pub fn stats(&self, _v: Values) -> Result<Vec<Stats>, KernelsError> {
        unavailable()
    }
    pub fn union_length(&self, _iv: Intervals) -> Result<Vec<i64>, KernelsError> {
        unavailable()
    }
    pub fn intersection_length(&self, _a: Intervals, _b: Intervals) -> Result<Vec<i64>, KernelsError> {
        unavailable()
    }
    pub fn histogram(&self, _v: Values, _buckets: LogBuckets) -> Result<Histogram, KernelsError> {
        unavailable()
    }
    pub fn max_per_group(&self, _group: &[u32], _values: &[i64], _groups: usize) -> Result<Vec<Option<i64>>, KernelsError> {
        unavailable()
    }
    pub fn sync_stall(&self, _group: &[u32], _start: &[i64], _duration: &[i64], _groups: usize) -> Result<Vec<i64>, KernelsError> {
        unavailable()
    }
}
