#!/usr/bin/env python3
"""Runs the fleet report's aggregation SQL (collector/fleet/sql/*.sql) unchanged in
DuckDB over a strand dataset and compares every result with the one
DataFusion produced (`strand report stranded --dump-sql DUMP_DIR`), for the
range and parameters of that run (DUMP_DIR/params.json).

The second engine proves the report logic is portable (docs/fleet-scale.md):
the same files, the same parameters, the same answers.

    python3 bench/fleet_duckdb.py --data DIR --compare DUMP_DIR

Exit status 1 when a result differs. Needs `pip install duckdb`.
"""

import argparse
import glob
import json
import math
import os
import sys
import time

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet_sql import load_params, names as sql_names, render  # noqa: E402


def create_views(con, data, filters):
    missing = []
    for table, where in filters.items():
        # Every data file under the table: compacted hours
        # (date=/hour=/cluster=/part-*.parquet), the report's stored results,
        # an agent's or import's Hive directories. Landed batches (_landing/)
        # and staging files (.name.tmp) are not under it or do not match.
        files = glob.glob(os.path.join(data, table, "**", "*.parquet"), recursive=True)
        if not files:
            missing.append(table)
            continue
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM ({int64_times(con, files)}) WHERE {where}")
    return missing


def int64_times(con, files):
    """The files as one relation with points in time as BIGINT ns, as the SQL
    expects: schema version 2 stores them as TIMESTAMP(NANOS, UTC), which
    DuckDB reads as TIMESTAMPTZ_NS (`epoch_ns` gives the ns back), version 1
    as BIGINT. DuckDB cannot union the two types, so each version's files
    are read apart and united by name."""
    lit = lambda fs: "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in fs) + "]"
    rows = con.execute(f"SELECT file_name, name, logical_type FROM parquet_schema({lit(files)})").fetchall()
    times = {}
    for f, name, logical in rows:
        cols = times.setdefault(f, set())
        if logical and "Timestamp" in str(logical):
            cols.add(name)
    groups = {}
    for f in files:
        groups.setdefault(frozenset(times.get(f, ())), []).append(f)
    parts = []
    for cols, fs in sorted(groups.items(), key=lambda g: sorted(g[0])):
        replace = f" REPLACE ({', '.join(f'epoch_ns({c}) AS {c}' for c in sorted(cols))})" if cols else ""
        parts.append(f"SELECT *{replace} FROM read_parquet({lit(fs)}, union_by_name = true, hive_partitioning = false)")
    return " UNION ALL BY NAME ".join(parts)


def norm(v):
    if isinstance(v, float):
        return ("n", round(v, 3))
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int):
        return ("n", float(v))
    if v is None:
        return ("z", 0)
    if isinstance(v, list):
        return ("l", tuple(norm(x) for x in v))
    return ("s", str(v))


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    return str(a) == str(b)


def compare(name, cols, duck_rows, dump_dir):
    path = os.path.join(dump_dir, name + ".jsonl")
    if not os.path.exists(path):
        return f"{name}: no DataFusion result at {path}"
    with open(path) as f:
        df_rows = [json.loads(line) for line in f if line.strip()]
    mine = [dict(zip(cols, r)) for r in duck_rows]
    theirs = [{c: r.get(c) for c in cols} for r in df_rows]
    if len(mine) != len(theirs):
        return f"{name}: DuckDB {len(mine)} rows, DataFusion {len(theirs)}"
    key = lambda r: tuple(norm(r[c]) for c in cols)
    for a, b in zip(sorted(mine, key=key), sorted(theirs, key=key)):
        for c in cols:
            if not same(a[c], b[c]):
                return f"{name}: column {c} differs: DuckDB {a[c]!r}, DataFusion {b[c]!r} (row {a})"
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: its default)")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 4GB")
    p.add_argument("--compare", required=True, help="directory of DataFusion results (strand report stranded --dump-sql)")
    a = p.parse_args()

    con = duckdb.connect()
    if a.threads:
        con.execute(f"SET threads = {a.threads}")
    if a.memory_limit:
        con.execute(f"SET memory_limit = '{a.memory_limit}'")
    params, filters = load_params(a.compare)
    missing = create_views(con, a.data, filters)
    names = sql_names()
    failures = []
    total = 0.0
    for name in names:
        sql = render(name, params)
        if any(f" {t}" in sql and t in missing for t in filters):
            print(f"{name:18s} skipped (a table it reads has no files: {', '.join(missing)})")
            continue
        t = time.monotonic()
        cur = con.execute(sql)
        rows = cur.fetchall()
        cols = [d[0] for d in cur.description]
        dt = time.monotonic() - t
        total += dt
        err = compare(name, cols, rows, a.compare)
        status = "same as DataFusion" if err is None else "DIFFERS"
        if err:
            failures.append(err)
        print(f"{name:18s} {len(rows):8d} rows {dt:8.3f} s  {status}")
    print(f"duckdb {duckdb.__version__}: {len(names)} queries in {total:.3f} s")
    for f in failures:
        print("  " + f, file=sys.stderr)
    print(f"{len(names) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
