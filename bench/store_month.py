#!/usr/bin/env python3
"""A month of compacted fleet history from one simulated hour (issue 17).

    bench/store_month.py SIM_HOUR_DIR OUT DAYS [KEEP_MINUTES] [FULL_HOURS]

SIM_HOUR_DIR is `strand-sim --hours 1` output (every row from the agents'
tables, windows by the agent's WindowBuilder). OUT receives the collector's
compacted layout (`<table>/date=D/hour=HH/cluster_dir=C/part-000000.parquet`,
docs/fleet-scale.md) for DAYS days *before* the simulated hour: every hour of
history is the simulated hour's rows shifted by whole hours (every `*_ns`
column holding a time; collective `seq` and `step` numbers continue from
hour to hour), one part per table, hour and cluster, as compaction
writes them. To keep a month on one disk, a history hour keeps only the rows
of the first KEEP_MINUTES minutes (default 1); the partition and file
structure, which is what the reader walks, is the real one. The simulated
hour itself is written in full, compacted the same way, and so are the
FULL_HOURS - 1 hours before it (default 1: the simulated hour only), so a
one-day report (FULL_HOURS 24) reads a full day of rows whatever the history.
"""
import datetime
import os
import sys
from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HOUR = 3_600_000_000_000
DAY = 24 * HOUR


def as_int64(t: pa.Table) -> pa.Table:
    """Schema 2's `Timestamp(ns, UTC)` columns as int64 ns (schema 1's type)."""
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in t.columns]
    return pa.Table.from_arrays(cols, names=t.column_names)


def time_columns(t: pa.Table):
    """`*_ns` int64 columns holding UTC times (not durations)."""
    out = []
    for f in t.schema:
        if f.name.endswith("_ns") and pa.types.is_int64(f.type):
            col = t.column(f.name)
            lo = pc.min(col).as_py()
            if lo is not None and lo > 10**17:
                out.append(f.name)
    return out


def main():
    src, out, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
    keep_min = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    full_hours = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    files = defaultdict(list)
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".parquet"):
                files[os.path.relpath(root, src).split(os.sep)[0]].append(os.path.join(root, n))
    for table, paths in sorted(files.items()):
        parts = [pq.read_table(p, partitioning=None) for p in paths]
        meta = dict(parts[0].schema.metadata or {})
        schema = parts[0].schema.with_metadata(None)
        t = as_int64(pa.concat_tables(parts))
        tcols = time_columns(t)
        start_col = next(c for c in ("ts_ns", "start_ns", "enter_ns") if c in t.column_names)
        t0 = pc.min(t.column(start_col)).as_py() // HOUR * HOUR
        meta[b"strand.batches"] = b""
        clusters = sorted(set(pc.unique(t.column("cluster")).to_pylist()))
        counters = {
            n: (pc.max(t.column(n)).as_py() or 0) + 1
            for n in ("seq", "step")
            if n in t.column_names and pa.types.is_int64(t.column(n).type)
        }
        thin = t.filter(pc.less(t.column(start_col), t0 + keep_min * 60_000_000_000))
        for h in range(-days * 24, 1):
            rows = t if h > -full_hours else thin
            cols = []
            for name in rows.column_names:
                c = rows.column(name)
                if name in tcols and h != 0:
                    c = pc.add(c, pa.scalar(h * HOUR, pa.int64()))
                if name in counters:
                    # Each hour continues the one before: collective sequence
                    # and step numbers rise, so a multi-hour report matches
                    # each collective once, as in a real job.
                    c = pc.add(c, pa.scalar((h + days * 24) * counters[name], pa.int64()))
                cols.append(c.cast(schema.field(name).type))
            shifted = pa.Table.from_arrays(cols, schema=schema.with_metadata(meta))
            at = t0 + h * HOUR
            day = at // DAY
            date = (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()
            hour = (at % DAY) // HOUR
            for cluster in clusters:
                part = shifted if len(clusters) == 1 else shifted.filter(pc.equal(shifted.column("cluster"), cluster))
                d = os.path.join(out, table, f"date={date}", f"hour={hour:02d}", f"cluster_dir={cluster}")
                os.makedirs(d, exist_ok=True)
                pq.write_table(part, os.path.join(d, "part-000000.parquet"), compression="zstd")
        print(
            f"{table}: {t.num_rows} rows an hour, {thin.num_rows} in a thinned history hour, "
            f"{days * 24} history hours, the last {full_hours} in full",
            flush=True,
        )


if __name__ == "__main__":
    main()
