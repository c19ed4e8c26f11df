//! `strand query`: SQL over a dataset (the collector's, or an agent's data
//! directory), printed as an aligned table, CSV or JSON.

use std::io::{self, Write};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::sql::sqlparser::parser::ParserError;
use futures::StreamExt;

use crate::dataset::Dataset;

/// What `strand query` runs.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// One SQL statement.
    pub sql: String,
    /// The dataset: a directory, a file:// URL, or s3://bucket/prefix.
    pub data: String,
    pub format: Format,
    /// DataFusion's memory pool: above it, operators spill or the query
    /// fails with a clear error. `None`: unbounded.
    pub memory_limit: Option<usize>,
    /// The query is stopped after this long. `None`: no limit.
    pub timeout: Option<std::time::Duration>,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with borders, for people.
    Table,
    /// CSV with a header row; lists are written as `[1, 2]`.
    Csv,
    /// One JSON array of objects; null columns are left out of an object.
    Json,
}

/// Only queries run: DDL (`CREATE`, `DROP`), DML (`INSERT`, `COPY … TO`)
/// and statements (`SET`, transactions) are refused before planning.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

pub async fn run(args: QueryOptions) -> anyhow::Result<()> {
    let work = async {
        let dataset = Dataset::open_bounded(&args.data, args.memory_limit).await?;
        let df = dataset.context().sql_with_options(&args.sql, read_only()).await.map_err(|e| refused(&args.sql, e))?;
        let stdout = io::stdout().lock();
        match write_results(df, args.format, io::BufWriter::new(stdout)).await {
            // `strand query … | head` closes the pipe early: that is not an error.
            Err(e) if is_broken_pipe(&e) => Ok(()),
            other => other,
        }
    };
    match args.timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(anyhow::anyhow!("the query was stopped after {} (--timeout)", humantime::format_duration(limit)))
        }),
    }
}

/// A statement `strand query` does not run, named by its leading keywords.
fn refused(sql: &str, e: DataFusionError) -> anyhow::Error {
    let message = e.find_root().to_string();
    let kind =
        ["DDL not supported", "DML not supported", "Statement not supported"].into_iter().find(|k| message.contains(k));
    match kind {
        Some(_) => {
            let mut words = sql.split_whitespace().map(str::to_uppercase);
            let mut keyword = words.next().unwrap_or_default();
            if let Some(next) = words.next().filter(|w| {
                ["INTO", "TABLE", "VIEW", "EXTERNAL", "SCHEMA", "DATABASE", "FUNCTION", "OR", "INDEX"]
                    .contains(&w.as_str())
            }) {
                keyword = format!("{keyword} {next}");
            }
            anyhow::anyhow!(
                "strand query only reads: refused the {keyword} statement ({}); run SELECT, WITH, EXPLAIN or SHOW",
                message.rsplit(": ").next().unwrap_or(&message)
            )
        }
        None => query_error(e),
    }
}

async fn write_results<W: Write>(
    df: datafusion::dataframe::DataFrame,
    format: Format,
    mut out: W,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let batches = df.collect().await.map_err(query_error)?;
            let text = arrow::util::pretty::pretty_format_batches(&batches)?;
            writeln!(out, "{text}")?;
        }
        Format::Csv => {
            let mut stream = df.execute_stream().await.map_err(query_error)?;
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            while let Some(batch) = stream.next().await {
                writer.write(&flatten_nested(&batch.map_err(query_error)?)?)?;
            }
        }
        Format::Json => {
            let mut stream = df.execute_stream().await.map_err(query_error)?;
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            while let Some(batch) = stream.next().await {
                writer.write(&batch.map_err(query_error)?)?;
            }
            writer.finish()?;
            drop(writer);
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// CSV has no lists or structs: such columns are written as their display text.
fn flatten_nested(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    if !batch.schema().fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let mut b = StringBuilder::new();
        for i in 0..column.len() {
            if column.is_null(i) {
                b.append_null();
            } else {
                b.append_value(formatter.value(i).to_string());
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// One line saying what is wrong with the query, without DataFusion's
/// repeated context (`{e:#}` would print the same message twice).
fn query_error(e: DataFusionError) -> anyhow::Error {
    let root = e.find_root();
    match root {
        DataFusionError::SQL(err, _) => match err.as_ref() {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => anyhow::anyhow!("SQL syntax error: {m}"),
            other => anyhow::anyhow!("SQL syntax error: {other}"),
        },
        DataFusionError::ResourcesExhausted(m) => {
            anyhow::anyhow!("the query needs more memory than --memory-limit allows and cannot spill: {m}")
        }
        other => anyhow::anyhow!("query failed: {other}"),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<arrow::error::ArrowError>().is_some_and(
                |e| matches!(e, arrow::error::ArrowError::IoError(_, e) if e.kind() == io::ErrorKind::BrokenPipe),
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_schemas::protocol::batch_path;
    use strand_schemas::{GpuSample, Table, to_parquet_bytes};

    async fn output(root: &std::path::Path, sql: &str, format: Format) -> String {
        let ds = Dataset::open(root.to_str().unwrap()).await.unwrap();
        let mut out = Vec::new();
        write_results(ds.sql(sql).await.unwrap(), format, &mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn results_print_as_table_csv_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows: Vec<GpuSample> = (0..2).map(GpuSample::example).collect();
        for (i, r) in rows.iter_mut().enumerate() {
            r.cluster = "c1".into();
            r.node = "n1".into();
            r.gpu_index = i as i32;
            r.pids = vec![10, 11];
        }
        let path = dir.path().join(batch_path("gpu_samples", "2024-03-01", "c1", "n1", "batch-0001"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, to_parquet_bytes(&rows).unwrap()).unwrap();
        let sql = "SELECT node, gpu_index, pids FROM gpu_samples ORDER BY gpu_index";

        let table = output(dir.path(), sql, Format::Table).await;
        assert!(table.contains("| node | gpu_index | pids     |"), "{table}");
        assert!(table.contains("| n1   | 1         | [10, 11] |"), "{table}");
        let csv = output(dir.path(), sql, Format::Csv).await;
        assert_eq!(csv, "node,gpu_index,pids\nn1,0,\"[10, 11]\"\nn1,1,\"[10, 11]\"\n");
        let json = output(dir.path(), sql, Format::Json).await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"node": "n1", "gpu_index": 0, "pids": [10, 11]},
                {"node": "n1", "gpu_index": 1, "pids": [10, 11]}
            ])
        );
        let empty = output(dir.path(), "SELECT node FROM gpu_samples WHERE false", Format::Json).await;
        assert_eq!(serde_json::from_str::<serde_json::Value>(&empty).unwrap(), serde_json::json!([]));
    }
}
