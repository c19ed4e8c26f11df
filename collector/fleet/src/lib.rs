//! strand-fleet: fleet analysis over the collector's dataset.
//!
//! | job | module |
//! |---|---|
//! | the dataset, its tables in DataFusion with Hive partitions and time ranges | [`dataset`] |
//! | `strand query`: SQL over a dataset | [`query`] |
//! | where the report's SQL runs: this process or a Ballista cluster | [`engine`] |
//! | the report's portable SQL (`collector/fleet/sql/`) and typed access to results | [`sql`] |
//! | the exact sync stalls, hour by hour (the one collective matcher) → `collective_stalls` | [`stalls`] |
//! | from the SQL results to the findings engine's inputs, and its outcome | [`analyze`] |
//! | `strand report stranded`: the one accounting per cluster, node, model, job, bucket | [`report`] |
//! | the SQL's results on disk, from strand or another engine (`--dump-sql`, `--from-results`) | [`results`] |
//!
//! Big data stays in the engine: the SQL reduces the dataset to per-GPU,
//! per-job and per-communicator rows, and only those come into Rust.

pub mod analyze;
pub mod dataset;
pub mod engine;
pub mod inputs;
pub mod output;
pub mod query;
pub mod report;
pub mod results;
pub mod sql;
pub mod stalls;
#[cfg(test)]
mod tests;

pub use analyze::{Analysis, Options, analyze};
pub use dataset::{Dataset, TimeRange};
