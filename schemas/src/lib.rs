//! strand's data contract (DESIGN §6): every table as an Arrow schema with a
//! version, a Rust row type, a batch builder, and a Parquet writer and reader.
//!
//! Each table is declared once with [`table!`] in [`tables`]; the schema, the
//! row type, the reader and `docs/schemas.md` all come from that declaration.
//! The crate also holds the few definitions both the agent and the collector
//! must share: the clock conversion ([`clock`]), kernel categories
//! ([`category`]), the table of communication kernels ([`comm_kernels`])
//! and the upload protocol's names ([`protocol`]).

pub mod bounded;
pub mod category;
pub mod clock;
pub mod column;
pub mod comm_kernels;
pub mod hive;
pub mod hostile;
pub mod layout;
pub mod parquet_io;
pub mod protocol;
pub mod table;
pub mod tables;

pub use bounded::{Budget, ReadLimits};
pub use parquet_io::{
    Batches, FileInfo, TableWriter, inspect_bytes, inspect_bytes_with, open_builder, open_file, open_file_with,
    open_reader, read_file, to_parquet_bytes,
};
pub use table::{ColumnDoc, SchemaVersion, Table, TableInfo};
pub use tables::*;

/// Every table of this build, in the order of `docs/schemas.md`.
pub fn all_tables() -> &'static [TableInfo] {
    static ALL: std::sync::OnceLock<Vec<TableInfo>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        vec![
            TableInfo::of::<GpuSample>(),
            TableInfo::of::<GpuEvent>(),
            TableInfo::of::<KernelEvent>(),
            TableInfo::of::<KernelSummary>(),
            TableInfo::of::<NcclCall>(),
            TableInfo::of::<CudaSyncCall>(),
            TableInfo::of::<ProcessEvent>(),
            TableInfo::of::<Step>(),
            TableInfo::of::<Window>(),
            TableInfo::of::<Finding>(),
            TableInfo::of::<NicSample>(),
            TableInfo::of::<ProcessSample>(),
            TableInfo::of::<CollectiveStall>(),
        ]
    })
}

/// The table called `name`, if this build knows it.
pub fn table_info(name: &str) -> Option<&'static TableInfo> {
    all_tables().iter().find(|t| t.name == name)
}

/// Why a file could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: not a Parquet file (no PAR1 magic at both ends)")]
    NotParquet { file: String },
    #[error("{file}: unreadable Parquet: {source}")]
    Parquet { file: String, source: parquet::errors::ParquetError },
    #[error("{file}: not a strand file (no `strand.table` key in the Parquet metadata)")]
    NotStrand { file: String },
    #[error("{file}: bad schema version {value:?} in the Parquet metadata (expected major.minor)")]
    BadVersion { file: String, value: String },
    #[error("{file}: holds table `{found}`, expected `{expected}`")]
    WrongTable { file: String, expected: String, found: String },
    #[error("{file}: unknown table `{table}`")]
    UnknownTable { file: String, table: String },
    #[error(
        "{file}: table `{table}` has schema version {found}, newer than version {supported} that this strand reads; upgrade strand to read it"
    )]
    NewerMajor { file: String, table: String, found: SchemaVersion, supported: SchemaVersion },
    #[error("{file}: table `{table}`: {detail}")]
    Schema { file: String, table: String, detail: String },
    /// The file's metadata is malformed or claims more than a reader's
    /// [`bounded::ReadLimits`] allow; nothing was allocated for it.
    #[error("{file}: refused: {detail}")]
    Limit { file: String, detail: String },
    /// Decoding the file would take more memory than the reader's
    /// `max_decoded_bytes`; nothing was decoded.
    #[error("{file}: too large to decode: {detail}")]
    TooLarge { file: String, detail: String },
}

/// The column tables of `docs/schemas.md`, generated from the declarations.
/// `docs/schemas.md` must contain each block verbatim (checked by a test);
/// regenerate with `cargo run -p strand-schemas --example schema-docs`.
pub fn docs_tables() -> Vec<(String, String)> {
    all_tables()
        .iter()
        .map(|t| {
            let mut s = format!("## `{}` (version {})\n\n{}\n\n", t.name, t.version, (t.description)());
            s.push_str("| column | type | nullable | unit | meaning |\n|---|---|---|---|---|\n");
            for c in (t.columns)() {
                s.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} |\n",
                    c.name,
                    c.type_name,
                    if c.nullable { "yes" } else { "no" },
                    c.unit,
                    c.meaning.replace('|', "\\|")
                ));
            }
            (t.name.to_string(), s)
        })
        .collect()
}
