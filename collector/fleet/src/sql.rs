//! The portable aggregation SQL of the fleet report (`collector/sql/*.sql`),
//! its parameters, and typed access to the results.
//!
//! The same files run unchanged in DuckDB (`bench/fleet_duckdb.py`), which is
//! how the report's logic keeps working when a fleet outgrows one machine
//! (docs/fleet-scale.md).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;

/// Every query: name (file stem) and text.
pub const QUERIES: &[(&str, &str)] = &[
    ("gpu_time", include_str!("../sql/gpu_time.sql")),
    ("node_allocation", include_str!("../sql/node_allocation.sql")),
    ("job_shapes", include_str!("../sql/job_shapes.sql")),
    ("gpu_link_counters", include_str!("../sql/gpu_link_counters.sql")),
    ("nic_counters", include_str!("../sql/nic_counters.sql")),
    ("stragglers", include_str!("../sql/stragglers.sql")),
    ("node_stragglers", include_str!("../sql/node_stragglers.sql")),
    ("bus_bandwidth", include_str!("../sql/bus_bandwidth.sql")),
    ("job_timeline", include_str!("../sql/job_timeline.sql")),
    ("job_io", include_str!("../sql/job_io.sql")),
    ("job_phases", include_str!("../sql/job_phases.sql")),
    ("job_failures", include_str!("../sql/job_failures.sql")),
];

/// The integer parameters of the queries (`{{name}}` in the files).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SqlParams {
    /// The agent's window period (`windows.period`): windows and exact stalls
    /// are joined on the window grid.
    pub window_ns: i64,
    /// Trend bucket of the report.
    pub bucket_ns: i64,
    /// Bucket of the allocation (FGD) figure.
    pub alloc_ns: i64,
    /// Bucket of the bus-bandwidth comparison.
    pub bw_bucket_ns: i64,
}

impl SqlParams {
    /// The report's parameters over `[start_ns, end_ns)`: the trend bucket,
    /// unless given, cuts the range in about 24, at least 10 minutes.
    /// Outside engines take them from `params.json` (`--dump-sql`), never
    /// from a rule of their own.
    pub fn new(start_ns: i64, end_ns: i64, window_ns: i64, bucket_ns: Option<i64>) -> Self {
        const TEN_MIN: i64 = 600_000_000_000;
        let bucket_ns = bucket_ns.unwrap_or_else(|| {
            let per = end_ns.saturating_sub(start_ns).max(0) / 24;
            (per.saturating_add(TEN_MIN - 1) / TEN_MIN).saturating_mul(TEN_MIN).max(TEN_MIN)
        });
        Self { window_ns, bucket_ns, alloc_ns: 60_000_000_000, bw_bucket_ns: 300_000_000_000 }
    }

    pub fn pairs(&self) -> [(&'static str, i64); 4] {
        [
            ("window_ns", self.window_ns),
            ("bucket_ns", self.bucket_ns),
            ("alloc_ns", self.alloc_ns),
            ("bw_bucket_ns", self.bw_bucket_ns),
        ]
    }
}

/// The text of query `name` with its parameters substituted.
pub fn render(name: &str, params: &SqlParams) -> anyhow::Result<String> {
    let (_, text) =
        QUERIES.iter().find(|(n, _)| *n == name).with_context(|| format!("no report query named {name}"))?;
    let mut sql = text.to_string();
    for (k, v) in params.pairs() {
        sql = sql.replace(&format!("{{{{{k}}}}}"), &v.to_string());
    }
    if let Some(i) = sql.find("{{") {
        bail!("report query {name}: unknown parameter near `{}`", &sql[i..(i + 30).min(sql.len())]);
    }
    Ok(sql)
}

/// Runs query `name` and collects its (small) result.
pub async fn run(ctx: &SessionContext, name: &str, params: &SqlParams) -> anyhow::Result<Rows> {
    let sql = render(name, params)?;
    let df = ctx.sql(&sql).await.with_context(|| format!("planning report query {name} (collector/sql/{name}.sql)"))?;
    let batches =
        df.collect().await.with_context(|| format!("running report query {name} (collector/sql/{name}.sql)"))?;
    Ok(Rows::new(name, batches))
}

/// A query result, read by column name with clear errors.
pub struct Rows {
    pub name: String,
    pub batches: Vec<RecordBatch>,
}

impl Rows {
    pub fn new(name: &str, batches: Vec<RecordBatch>) -> Self {
        Self { name: name.to_string(), batches }
    }

    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn column(&self, name: &str, to: &DataType) -> anyhow::Result<Vec<Arc<dyn Array>>> {
        self.batches
            .iter()
            .map(|b| {
                let a = b.column_by_name(name).with_context(|| format!("query {}: no column `{name}`", self.name))?;
                cast(a, to)
                    .with_context(|| format!("query {}: column `{name}` ({}) is not {to}", self.name, a.data_type()))
            })
            .collect()
    }

    pub fn i64(&self, name: &str) -> anyhow::Result<Vec<Option<i64>>> {
        let cols = self.column(name, &DataType::Int64)?;
        Ok(cols.iter().flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>()).collect())
    }

    /// A column that must have no nulls.
    pub fn i64_req(&self, name: &str) -> anyhow::Result<Vec<i64>> {
        self.i64(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.with_context(|| format!("query {}: null `{name}` in row {i}", self.name)))
            .collect()
    }

    pub fn f64(&self, name: &str) -> anyhow::Result<Vec<Option<f64>>> {
        let cols = self.column(name, &DataType::Float64)?;
        Ok(cols.iter().flat_map(|a| a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>()).collect())
    }

    /// Strings, with equal neighbouring values sharing one allocation.
    pub fn str(&self, name: &str) -> anyhow::Result<Vec<Option<Arc<str>>>> {
        let cols = self.column(name, &DataType::Utf8)?;
        let mut out = Vec::with_capacity(self.len());
        let mut interned: HashMap<String, Arc<str>> = HashMap::new();
        for a in &cols {
            for v in a.as_string::<i32>().iter() {
                out.push(v.map(|s| match interned.get(s) {
                    Some(a) => a.clone(),
                    None => {
                        let a: Arc<str> = Arc::from(s);
                        if interned.len() < 100_000 {
                            interned.insert(s.to_string(), a.clone());
                        }
                        a
                    }
                }));
            }
        }
        Ok(out)
    }

    /// Strings that must have no nulls.
    pub fn str_req(&self, name: &str) -> anyhow::Result<Vec<Arc<str>>> {
        self.str(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.with_context(|| format!("query {}: null `{name}` in row {i}", self.name)))
            .collect()
    }

    /// A list-of-int64 column (NVLink counters per link).
    pub fn i64_lists(&self, name: &str) -> anyhow::Result<Vec<Option<Vec<i64>>>> {
        let mut out = Vec::with_capacity(self.len());
        for b in &self.batches {
            let a = b.column_by_name(name).with_context(|| format!("query {}: no column `{name}`", self.name))?;
            if a.data_type() == &DataType::Null {
                // Every value null: JSON lines give no list type to infer.
                out.extend(std::iter::repeat_n(None, a.len()));
                continue;
            }
            let list = a
                .as_list_opt::<i32>()
                .with_context(|| format!("query {}: column `{name}` is {}, not a list", self.name, a.data_type()))?;
            for i in 0..list.len() {
                if list.is_null(i) {
                    out.push(None);
                    continue;
                }
                let v = cast(&list.value(i), &DataType::Int64)?;
                out.push(Some(v.as_primitive::<Int64Type>().iter().map(|x| x.unwrap_or(0)).collect()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_substituted_and_no_query_uses_division() {
        let p = SqlParams { window_ns: 10, bucket_ns: 20, alloc_ns: 30, bw_bucket_ns: 40 };
        for (name, _) in QUERIES {
            let sql = render(name, &p).unwrap();
            assert!(!sql.contains("{{"), "{name}");
            // DuckDB's `/` is a float division, DataFusion's an integer one: never use it.
            let code: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            assert!(!code.contains(" / "), "{name} divides; use `t - t % p` buckets");
        }
        assert!(render("nope", &p).is_err());
    }

    /// `sql/gpu_time.sql` is generated from the one accounting's state
    /// columns; `STRAND_BLESS=1 cargo test -p strand-fleet` rewrites it.
    #[test]
    fn gpu_time_sql_is_the_accounting() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/gpu_time.sql");
        let want = strand_analysis::accounting::gpu_time_sql();
        if std::env::var_os("STRAND_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap();
        assert!(have == want, "{path} is stale: run STRAND_BLESS=1 cargo test -p strand-fleet gpu_time_sql");
    }
}
