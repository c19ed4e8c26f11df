#!/usr/bin/env python3
"""Reads every table directory of strand datasets the way a user of each
engine would, and prints what each engine got as JSON (tests/tests/engines.rs).

    python3 tests/read_engines.py ROOT [ROOT...]

Per root, table and engine: `rows`, `types` (the engine's type of every
column whose name ends in `_ns`), `columns` (every column name, with the
Hive partition columns), `start_sum` (sum of the table's start time as
integer ns, as a string), `digest` (a hash of every row's file columns, times as integer
ns, rows sorted) or `error`. Engines, as their documentation reads a Hive
directory:

- pandas: `pd.read_parquet(dir)`
- pyarrow: `pyarrow.dataset.dataset(dir, partitioning="hive")`
- polars: `pl.read_parquet(dir/**/*.parquet, hive_partitioning=True)`
- duckdb: `read_parquet('dir/**/*.parquet', hive_partitioning = true)`
- spark: `spark.read.parquet(dir)` (local, one session for all tables) with
  `spark.sql.legacy.parquet.nanosAsLong=true`: Spark has no nanosecond
  timestamp and refuses TIMESTAMP(NANOS) without it.
"""

import hashlib
import json
import math
import os
import sys

START = ("ts_ns", "start_ns", "enter_ns")


def canon(v):
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return int(v) if v.is_integer() else v
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return tuple(canon(x) for x in v)
    return v


def summary(columns, types, rows, file_columns):
    """`rows` are dicts of column -> value with times already integer ns."""
    start = next((c for c in START if c in file_columns), None)
    canon_rows = sorted(repr(tuple(canon(r[c]) for c in file_columns)) for r in rows)
    return {
        "rows": len(rows),
        "columns": sorted(columns),
        "types": {c: t for c, t in types.items() if c.endswith("_ns")},
        "start_sum": str(sum(canon(r[start]) or 0 for r in rows) if start else 0),
        "digest": hashlib.sha256("\n".join(canon_rows).encode()).hexdigest(),
    }


def file_columns_of(d):
    import pyarrow.parquet as pq

    for dirpath, _, names in os.walk(d):
        for n in sorted(names):
            if n.endswith(".parquet") and not n.startswith((".", "_")):
                return pq.read_schema(os.path.join(dirpath, n)).names
    return []


def read_pandas(d, cols):
    import pandas as pd

    df = pd.read_parquet(d)
    types = {c: str(df[c].dtype) for c in df.columns}
    data = {}
    for c in cols:
        s = df[c]
        if str(s.dtype).startswith("datetime64"):
            ns = s.array.asi8 if hasattr(s.array, "asi8") else s.values.astype("int64")
            data[c] = [None if pd.isna(t) else int(n) for t, n in zip(s, ns)]
        else:
            data[c] = [None if (not isinstance(x, (list, tuple)) and not hasattr(x, "tolist") and pd.isna(x)) else x for x in s]
    rows = [{c: data[c][i] for c in cols} for i in range(len(df))]
    return summary(df.columns, types, rows, cols)


def read_pyarrow(d, cols):
    import pyarrow as pa
    import pyarrow.dataset as ds

    t = ds.dataset(d, partitioning="hive").to_table()
    types = {f.name: str(f.type) for f in t.schema}
    data = {}
    for c in cols:
        col = t.column(c)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        data[c] = col.to_pylist()
    rows = [{c: data[c][i] for c in cols} for i in range(t.num_rows)]
    return summary(t.schema.names, types, rows, cols)


def read_polars(d, cols):
    import polars as pl

    df = pl.read_parquet(os.path.join(d, "**", "*.parquet"), hive_partitioning=True)
    types = {c: str(t) for c, t in df.schema.items()}
    ints = df.select([pl.col(c).cast(pl.Int64) if isinstance(df.schema[c], pl.Datetime) else pl.col(c) for c in cols])
    return summary(df.columns, types, ints.rows(named=True), cols)


def read_duckdb(d, cols):
    import duckdb

    pattern = os.path.join(d, "**", "*.parquet").replace("'", "''")
    rel = f"read_parquet('{pattern}', hive_partitioning = true)"
    con = duckdb.connect()
    described = con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()
    types = {r[0]: r[1] for r in described}
    sel = ", ".join(f'epoch_ns("{c}")' if types[c].startswith("TIMESTAMP") else f'"{c}"' for c in cols)
    rows = [dict(zip(cols, r)) for r in con.execute(f"SELECT {sel} FROM {rel}").fetchall()]
    return summary(types, types, rows, cols)


def spark_session():
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("strand-read-engines")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_spark(spark, d, cols):
    df = spark.read.parquet(d)
    types = dict(df.dtypes)
    rows = [r.asDict() for r in df.select(*cols).collect()]
    return summary(df.columns, types, rows, cols)


def main():
    out = {}
    spark = None
    for root in sys.argv[1:]:
        for table in sorted(os.listdir(root)):
            d = os.path.join(root, table)
            if not os.path.isdir(d) or table.startswith(("_", ".")):
                continue
            cols = file_columns_of(d)
            res = out.setdefault(root, {}).setdefault(table, {})
            for name, f in [("pandas", read_pandas), ("pyarrow", read_pyarrow), ("polars", read_polars), ("duckdb", read_duckdb)]:
                try:
                    res[name] = f(d, cols)
                except Exception as e:  # reported per engine, checked by the test
                    res[name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            try:
                spark = spark or spark_session()
                res["spark"] = read_spark(spark, d, cols)
            except Exception as e:
                res["spark"] = {"error": f"{type(e).__name__}: {e}"[:2000]}
    if spark is not None:
        spark.stop()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
