"""The fleet report's SQL as every outside engine runs it (docs/fleet-scale.md):
the files of collector/fleet/sql/, their parameters, and the time range each
table is limited to (the filter strand's `Dataset::open_range` applies).
Shared by bench/fleet_duckdb.py and bench/fleet_spark.py."""

import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQL_DIR = os.path.join(ROOT, "collector", "fleet", "sql")

# Each table's time columns, as Dataset::open_range filters them.
TIME = {
    "gpu_samples": ("ts_ns", None),
    "gpu_events": ("ts_ns", None),
    "nic_samples": ("ts_ns", None),
    "process_samples": ("ts_ns", None),
    "process_events": ("ts_ns", None),
    "windows": ("start_ns", "end_ns"),
    "steps": ("start_ns", "end_ns"),
    "collective_stalls": ("start_ns", "end_ns"),
    "nccl_calls": ("enter_ns", "exit_ns"),
}


def time_filter(table, start, end):
    """The SQL condition that limits `table` to [start, end) (UTC ns)."""
    t0, t1 = TIME[table]
    if t1 is None:
        return f"{t0} >= {start} AND {t0} < {end}"
    return f"{t0} < {end} AND COALESCE({t1}, {t0}) >= {start}"


def names(sql_dir=SQL_DIR):
    return sorted(os.path.splitext(os.path.basename(f))[0] for f in glob.glob(os.path.join(sql_dir, "*.sql")))


def render(name, params, sql_dir=SQL_DIR):
    """The text of `<name>.sql` with its `{{param}}` integers substituted."""
    with open(os.path.join(sql_dir, name + ".sql")) as f:
        sql = f.read()
    for k, v in params.items():
        sql = sql.replace("{{" + k + "}}", str(int(v)))
    if "{{" in sql:
        raise SystemExit(f"{name}.sql: unknown parameter")
    return sql


def add_param_args(p):
    """The report's parameters, with strand's defaults (strand report stranded)."""
    p.add_argument("--window-ns", type=int, default=10_000_000_000, help="the agents' windows.period")
    p.add_argument("--bucket-ns", type=int, default=600_000_000_000, help="trend bucket, as strand's --bucket")
    p.add_argument("--alloc-ns", type=int, default=60_000_000_000)
    p.add_argument("--bw-bucket-ns", type=int, default=300_000_000_000)


def params_of(a):
    return {"window_ns": a.window_ns, "bucket_ns": a.bucket_ns, "alloc_ns": a.alloc_ns, "bw_bucket_ns": a.bw_bucket_ns}
