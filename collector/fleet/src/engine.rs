//! Where the report's SQL runs: in this process, or on an Apache DataFusion
//! Ballista cluster (`--engine ballista://HOST:PORT`, docs/fleet-scale.md).
//!
//! A Ballista session sees the same tables as the local one: strand lists
//! the files of the range (the same pruning, landed batches no part holds
//! included, each row once) and hands the executors plain Parquet listing
//! tables over exactly those files, with its columns (points in time as
//! `BIGINT` ns whatever the files' schema version) and the same range
//! filter. Plain listing tables are what Ballista's plan codec carries, so
//! stock Ballista 55.0 schedulers and executors serve it as well as
//! `strand-ballista`'s. The executors read the files themselves: the
//! dataset must be where they can read it (a shared path or S3).
//!
//! A table with no file in the range reads one empty Parquet file of its
//! columns, `_strand_no_files/<table>/empty.parquet`, written into the
//! dataset (the Ballista path stores its stalls there anyway): a listing
//! table without files plans as `EmptyExec`, whose stage metrics Ballista
//! 55's scheduler counts differently from its executors, drops the task's
//! status ("task metrics array size … does not equal") and the job never
//! ends.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use ballista::extension::{SessionConfigExt, SessionContextExt};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::dataset::{self, Dataset, TimeRange};
use crate::output::Output;

/// Under the dataset's root, a directory no strand writer uses: where a
/// table that has no file in the range finds an empty one.
const EMPTY_DIR: &str = "_strand_no_files";

/// The engine of the report's SQL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Engine {
    /// DataFusion in this process.
    #[default]
    Local,
    /// A Ballista scheduler, `HOST:PORT` of its gRPC service.
    Ballista { scheduler: String },
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "local" {
            return Ok(Engine::Local);
        }
        let Some(addr) = s.strip_prefix("ballista://") else {
            return Err(format!("engine {s:?}: use `local` or `ballista://HOST:PORT`"));
        };
        let addr = addr.trim_end_matches('/');
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("engine {s:?}: give the scheduler's port"))?;
        if host.is_empty() || host.contains(['/', '@', '?', '#']) {
            return Err(format!("engine {s:?}: `{host}` is not a host name"));
        }
        port.parse::<u16>().map_err(|_| format!("engine {s:?}: `{port}` is not a port"))?;
        Ok(Engine::Ballista { scheduler: addr.to_string() })
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Local => f.write_str("local"),
            Engine::Ballista { scheduler } => write!(f, "ballista://{scheduler}"),
        }
    }
}

/// A session on the Ballista scheduler at `scheduler` (`HOST:PORT`) whose
/// tables are `ds`'s over `range` (see the module docs); `store` is the
/// dataset's root for writing, where empty tables get their empty file.
/// Nothing is sent until the first query, whose error then names the
/// scheduler.
pub async fn ballista_session(
    scheduler: &str,
    ds: &Dataset,
    range: TimeRange,
    store: &Output,
) -> anyhow::Result<SessionContext> {
    // The same SQL dialect as the local session (see `Dataset::open`).
    let config = SessionConfig::new_with_ballista().set_str("datafusion.sql_parser.dialect", "PostgreSQL");
    let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
    let ctx = SessionContext::remote_with_state(&format!("df://{scheduler}"), state)
        .await
        .with_context(|| format!("cannot set up a session on the Ballista scheduler {scheduler}"))?;
    for t in strand_schemas::all_tables() {
        let files = ds.files(t.name).await?;
        let mut urls = files
            .iter()
            .map(|(key, _)| {
                ListingTableUrl::parse(format!("{}{key}", ds.root()))
                    .with_context(|| format!("table {}: file {key} is not a URL", t.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if urls.is_empty() {
            let key = format!("{EMPTY_DIR}/{}/empty.parquet", t.name);
            store.put(&key, crate::results::empty_table_file(t)?.into()).await?;
            urls.push(ListingTableUrl::parse(format!("{}{key}", ds.root()))?);
        }
        // Every file strand listed, whatever its name ends with.
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(strand_schemas::table::int64_times(&(t.schema)()));
        let table = ListingTable::try_new(config)?;
        let view = ctx.read_table(Arc::new(table))?.filter(dataset::range_filter(t, range))?.into_view();
        ctx.register_table(t.name, view)?;
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_is_local_or_a_ballista_scheduler_and_nothing_else() {
        assert_eq!("local".parse::<Engine>(), Ok(Engine::Local));
        assert_eq!(
            "ballista://sched.example:50050".parse::<Engine>(),
            Ok(Engine::Ballista { scheduler: "sched.example:50050".into() })
        );
        assert_eq!(
            "ballista://10.0.0.1:50050".parse::<Engine>().map(|e| e.to_string()).as_deref(),
            Ok("ballista://10.0.0.1:50050")
        );
        for bad in [
            "",
            "spark://x:1",
            "ballista://",
            "ballista://host",
            "ballista://:50050",
            "ballista://h:port",
            "ballista://h:99999",
            "ballista://u@h:1",
        ] {
            let e = bad.parse::<Engine>().expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
