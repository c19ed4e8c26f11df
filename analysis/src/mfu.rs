//! DESIGN §3 MFU: achieved model FLOP/s ÷ peak dense FLOP/s of the GPU for
//! the dtype, and the tensor-pipe estimate shown when the model FLOPs are
//! unknown.
//!
//! [`PEAK_DENSE_FLOPS`] is the one table of peak dense (no 2:4 sparsity)
//! tensor-core FLOP/s per GPU model and dtype, from NVIDIA's data sheets;
//! [`PeakTable`] looks names up in it and takes overrides from config.

use serde::Deserialize;

/// Compute dtypes the table knows (the `steps.dtype` values).
pub const DTYPES: &[&str] = &["fp8", "bf16", "fp16", "tf32", "fp32", "fp64"];

/// One GPU model: the substring of the NVML / CUDA product name that
/// identifies it, and its peak dense FLOP/s per dtype (`None`: unsupported).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakRow {
    pub model: &'static str,
    /// Substrings that must all appear in the product name (case-insensitive).
    pub matches: &'static [&'static str],
    pub fp8: Option<f64>,
    pub bf16: Option<f64>,
    pub fp16: Option<f64>,
    pub tf32: Option<f64>,
    pub fp32: Option<f64>,
    pub fp64: Option<f64>,
}

const T: f64 = 1e12;

/// Peak dense FLOP/s, most specific names first (the first match wins).
/// Sources: NVIDIA H100, H200, A100, L40S, L4 and HGX B200 data sheets (dense
/// figures are half the "with sparsity" ones; fp32/fp64 are the tensor-core
/// or, where higher, the SIMT rate).
pub const PEAK_DENSE_FLOPS: &[PeakRow] = &[
    PeakRow {
        model: "H100 PCIe",
        matches: &["H100", "PCIE"],
        fp8: Some(1513.0 * T),
        bf16: Some(756.5 * T),
        fp16: Some(756.5 * T),
        tf32: Some(378.0 * T),
        fp32: Some(51.2 * T),
        fp64: Some(51.2 * T),
    },
    PeakRow {
        model: "H100 NVL",
        matches: &["H100", "NVL"],
        fp8: Some(1670.5 * T),
        bf16: Some(835.5 * T),
        fp16: Some(835.5 * T),
        tf32: Some(417.5 * T),
        fp32: Some(60.0 * T),
        fp64: Some(60.0 * T),
    },
    PeakRow {
        model: "H200 NVL",
        matches: &["H200", "NVL"],
        fp8: Some(1670.5 * T),
        bf16: Some(835.5 * T),
        fp16: Some(835.5 * T),
        tf32: Some(417.5 * T),
        fp32: Some(60.0 * T),
        fp64: Some(60.0 * T),
    },
    PeakRow {
        model: "GH200",
        matches: &["GH200"],
        fp8: Some(1979.0 * T),
        bf16: Some(989.5 * T),
        fp16: Some(989.5 * T),
        tf32: Some(494.5 * T),
        fp32: Some(67.0 * T),
        fp64: Some(67.0 * T),
    },
    PeakRow {
        model: "H200 SXM",
        matches: &["H200"],
        fp8: Some(1979.0 * T),
        bf16: Some(989.5 * T),
        fp16: Some(989.5 * T),
        tf32: Some(494.5 * T),
        fp32: Some(67.0 * T),
        fp64: Some(67.0 * T),
    },
    // "NVIDIA H100 80GB HBM3" and "H100 SXM5": the SXM part.
    PeakRow {
        model: "H100 SXM",
        matches: &["H100"],
        fp8: Some(1979.0 * T),
        bf16: Some(989.5 * T),
        fp16: Some(989.5 * T),
        tf32: Some(494.5 * T),
        fp32: Some(67.0 * T),
        fp64: Some(67.0 * T),
    },
    PeakRow {
        model: "H800",
        matches: &["H800"],
        fp8: Some(1979.0 * T),
        bf16: Some(989.5 * T),
        fp16: Some(989.5 * T),
        tf32: Some(494.5 * T),
        fp32: Some(67.0 * T),
        fp64: Some(1.0 * T),
    },
    PeakRow {
        model: "B200",
        matches: &["B200"],
        fp8: Some(4500.0 * T),
        bf16: Some(2250.0 * T),
        fp16: Some(2250.0 * T),
        tf32: Some(1100.0 * T),
        fp32: Some(75.0 * T),
        fp64: Some(37.0 * T),
    },
    // SXM4 and PCIe A100 have the same tensor-core peaks; A800 too.
    PeakRow {
        model: "A100",
        matches: &["A100"],
        fp8: None,
        bf16: Some(312.0 * T),
        fp16: Some(312.0 * T),
        tf32: Some(156.0 * T),
        fp32: Some(19.5 * T),
        fp64: Some(19.5 * T),
    },
    PeakRow {
        model: "A800",
        matches: &["A800"],
        fp8: None,
        bf16: Some(312.0 * T),
        fp16: Some(312.0 * T),
        tf32: Some(156.0 * T),
        fp32: Some(19.5 * T),
        fp64: Some(19.5 * T),
    },
    PeakRow {
        model: "L40S",
        matches: &["L40S"],
        fp8: Some(733.0 * T),
        bf16: Some(362.05 * T),
        fp16: Some(362.05 * T),
        tf32: Some(183.0 * T),
        fp32: Some(91.6 * T),
        fp64: None,
    },
    PeakRow {
        model: "L4",
        matches: &["L4"],
        fp8: Some(242.5 * T),
        bf16: Some(121.0 * T),
        fp16: Some(121.0 * T),
        tf32: Some(60.0 * T),
        fp32: Some(30.3 * T),
        fp64: None,
    },
];

impl PeakRow {
    pub fn get(&self, dtype: &str) -> Option<f64> {
        match normalize_dtype(dtype)? {
            "fp8" => self.fp8,
            "bf16" => self.bf16,
            "fp16" => self.fp16,
            "tf32" => self.tf32,
            "fp32" => self.fp32,
            "fp64" => self.fp64,
            _ => None,
        }
    }

    fn matches(&self, upper_name: &str) -> bool {
        // Short keys ("L4", "NVL") must be whole words so that "L4" does not match "L40S".
        self.matches.iter().all(|m| {
            if m.len() <= 3 {
                upper_name.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == *m)
            } else {
                upper_name.contains(m)
            }
        })
    }
}

/// Canonical dtype name: `bfloat16` → `bf16`, `float16`/`half` → `fp16`, ….
pub fn normalize_dtype(dtype: &str) -> Option<&'static str> {
    Some(match dtype.trim().to_ascii_lowercase().as_str() {
        "fp8" | "float8" | "e4m3" | "e5m2" | "fp8_e4m3" | "fp8_e5m2" => "fp8",
        "bf16" | "bfloat16" => "bf16",
        "fp16" | "float16" | "half" => "fp16",
        "tf32" | "tensorfloat32" => "tf32",
        "fp32" | "float32" | "float" => "fp32",
        "fp64" | "float64" | "double" => "fp64",
        _ => return None,
    })
}

/// A config override: peak dense FLOP/s of the GPUs whose product name
/// contains `gpu` (case-insensitive), for `dtype`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeakOverride {
    pub gpu: String,
    pub dtype: String,
    pub flops_per_s: f64,
}

/// Peak lookups: config overrides first, then [`PEAK_DENSE_FLOPS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeakTable {
    pub overrides: Vec<PeakOverride>,
}

impl PeakTable {
    pub fn new(overrides: Vec<PeakOverride>) -> Result<Self, crate::AnalysisError> {
        for o in &overrides {
            if normalize_dtype(&o.dtype).is_none() {
                return Err(crate::AnalysisError::PeakOverride(format!(
                    "for {:?}: unknown dtype {:?} (expected one of {})",
                    o.gpu,
                    o.dtype,
                    DTYPES.join(", ")
                )));
            }
            if !(o.flops_per_s.is_finite() && o.flops_per_s > 0.0) {
                return Err(crate::AnalysisError::PeakOverride(format!(
                    "for {:?}: flops_per_s must be positive, got {}",
                    o.gpu, o.flops_per_s
                )));
            }
        }
        Ok(Self { overrides })
    }

    /// The table row for a product name.
    pub fn model(&self, gpu_name: &str) -> Option<&'static PeakRow> {
        let upper = gpu_name.to_ascii_uppercase();
        PEAK_DENSE_FLOPS.iter().find(|r| r.matches(&upper))
    }

    /// Peak dense FLOP/s of `gpu_name` for `dtype`.
    pub fn peak(&self, gpu_name: &str, dtype: &str) -> Option<f64> {
        let d = normalize_dtype(dtype)?;
        let upper = gpu_name.to_ascii_uppercase();
        if let Some(o) = self
            .overrides
            .iter()
            .find(|o| upper.contains(&o.gpu.to_ascii_uppercase()) && normalize_dtype(&o.dtype) == Some(d))
        {
            return Some(o.flops_per_s);
        }
        self.model(gpu_name)?.get(d)
    }
}

/// MFU = model FLOPs ÷ (T × peak). `None` without FLOPs, peak or time.
pub fn mfu(model_flops: Option<f64>, window_ns: i64, peak_flops_per_s: Option<f64>) -> Option<f64> {
    let (f, p) = (model_flops?, peak_flops_per_s?);
    (window_ns > 0 && p > 0.0).then(|| f / (window_ns as f64 * 1e-9 * p))
}

/// Tensor-pipe estimate: tensor active × SM clock ÷ max SM clock. GPM's tensor
/// activity is measured at the current clock; scaling by the clock ratio
/// turns it into a share of the peak. An estimate, never MFU.
pub fn tensor_estimate(
    tensor_active: Option<f64>,
    sm_clock_mhz: Option<i32>,
    sm_clock_max_mhz: Option<i32>,
) -> Option<f64> {
    let t = tensor_active?;
    match (sm_clock_mhz, sm_clock_max_mhz) {
        (Some(c), Some(m)) if m > 0 && c >= 0 => Some(t * c as f64 / m as f64),
        _ => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_find_their_row() {
        let t = PeakTable::default();
        let cases = [
            ("NVIDIA H100 80GB HBM3", "H100 SXM"),
            ("NVIDIA H100 PCIe", "H100 PCIe"),
            ("NVIDIA H100 NVL", "H100 NVL"),
            ("NVIDIA H200", "H200 SXM"),
            ("NVIDIA H200 NVL", "H200 NVL"),
            ("NVIDIA GH200 480GB", "GH200"),
            ("NVIDIA A100-SXM4-80GB", "A100"),
            ("NVIDIA A100 80GB PCIe", "A100"),
            ("NVIDIA A100-PG509-200", "A100"),
            ("NVIDIA L40S", "L40S"),
            ("NVIDIA L4", "L4"),
            ("NVIDIA B200", "B200"),
        ];
        for (name, model) in cases {
            assert_eq!(t.model(name).map(|r| r.model), Some(model), "{name}");
        }
        assert_eq!(t.model("Tesla V100-SXM2-16GB"), None);
        assert_eq!(t.peak("NVIDIA H100 80GB HBM3", "bfloat16"), Some(989.5e12));
        assert_eq!(t.peak("NVIDIA A100-SXM4-80GB", "fp8"), None, "A100 has no FP8 tensor cores");
    }

    #[test]
    fn overrides_win_and_bad_overrides_are_refused() {
        let t = PeakTable::new(vec![PeakOverride { gpu: "h100".into(), dtype: "bf16".into(), flops_per_s: 900e12 }])
            .unwrap();
        assert_eq!(t.peak("NVIDIA H100 80GB HBM3", "bf16"), Some(900e12));
        assert_eq!(t.peak("NVIDIA H100 80GB HBM3", "fp8"), Some(1979e12));
        let e =
            PeakTable::new(vec![PeakOverride { gpu: "x".into(), dtype: "int4".into(), flops_per_s: 1.0 }]).unwrap_err();
        assert!(e.to_string().contains("unknown dtype \"int4\""), "{e}");
    }

    #[test]
    fn mfu_and_estimate() {
        // 4.9475e14 FLOPs in 1 s on an H100 (bf16 peak 989.5 TF/s) = 50%.
        assert_eq!(mfu(Some(494.75e12), 1_000_000_000, Some(989.5e12)), Some(0.5));
        assert_eq!(mfu(None, 1_000_000_000, Some(989.5e12)), None);
        assert_eq!(tensor_estimate(Some(0.6), Some(1000), Some(2000)), Some(0.3));
        assert_eq!(tensor_estimate(None, Some(1000), Some(2000)), None);
    }
}
