//! The dataset: strand tables in Hive layout
//! (`<table>/date=YYYY-MM-DD/cluster=<c>/node=<n>/<batch-id>.parquet`),
//! registered with DataFusion with their partition columns.
