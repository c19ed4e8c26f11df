#!/usr/bin/env python3
"""Counts rows of strand tables the way an outside engine sees a dataset:
every `*.parquet` under `<root>/<table>/` (compacted hours, the report's
stored results, Hive directories), never `_landing/` or staging files.

    python3 bench/external_count.py duckdb ROOT TABLE [TABLE...]
    python3 bench/external_count.py spark  ROOT TABLE [TABLE...]

Prints one line per table: `TABLE ROWS DISTINCT_KEYS COLUMNS`, where
DISTINCT_KEYS counts distinct (node, time) pairs (a duplicated row would
show as ROWS > DISTINCT_KEYS) and COLUMNS is the number of columns the
engine sees (schema evolution). Spark reads with its defaults (no
`mergeSchema`, no `pathGlobFilter`, Hive partition discovery on) but for
`spark.sql.legacy.parquet.nanosAsLong`, which schema version 2 needs.
"""

import glob
import os
import sys

TIME = {"gpu_samples": "ts_ns", "windows": "start_ns", "nccl_calls": "enter_ns", "collective_stalls": "start_ns"}


def duckdb_counts(root, tables):
    import duckdb

    for t in tables:
        if not glob.glob(os.path.join(root, t, "**", "*.parquet"), recursive=True):
            print(t, 0, 0, 0)
            continue
        pattern = os.path.join(root, t, "**", "*.parquet").replace("'", "''")
        rel = f"read_parquet('{pattern}', union_by_name = true, hive_partitioning = false)"
        ts = TIME.get(t, "ts_ns")
        con = duckdb.connect()
        n, k = con.execute(f"SELECT count(*), count(DISTINCT (node, {ts})) FROM {rel}").fetchone()
        cols = len(con.execute(f"SELECT * FROM {rel} LIMIT 0").description)
        print(t, n, k, cols)


def spark_counts(root, tables):
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("strand-external-count")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        # Spark has no nanosecond timestamp: without this it refuses schema
        # version 2's TIMESTAMP(NANOS) columns; with it they read as bigint ns.
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for t in tables:
        path = os.path.join(root, t)
        if not glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True):
            print(t, 0, 0, 0)
            continue
        df = spark.read.parquet(path)
        ts = TIME.get(t, "ts_ns")
        n = df.count()
        k = df.select("node", ts).distinct().count()
        print(t, n, k, len(df.columns))
    spark.stop()


if __name__ == "__main__":
    engine, root, tables = sys.argv[1], sys.argv[2], sys.argv[3:]
    {"duckdb": duckdb_counts, "spark": spark_counts}[engine](root, tables)
