"""The fleet report's SQL as every outside engine runs it (docs/fleet-scale.md):
the files of collector/fleet/sql/, and from strand's `params.json` the range,
the parameters and each table's range filter (the one `Dataset::open_range`
applies, as SQL text): nothing here re-derives them.
Shared by bench/fleet_duckdb.py and bench/fleet_spark.py."""

import glob
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQL_DIR = os.path.join(ROOT, "collector", "fleet", "sql")

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


def load_params(results_dir):
    """(params, filters) of `results_dir/params.json`, which `strand report
    stranded --dump-sql` writes: the engine runs the SQL for exactly the
    range and parameters strand chose (one rule for the trend bucket,
    strand's), filtering each table as strand does, and `--from-results`
    checks them. `filters` maps each table the SQL files read to its
    condition."""
    path = os.path.join(results_dir, "params.json")
    try:
        with open(path) as f:
            p = json.load(f)
        filters = {t: str(w) for t, w in p.pop("filters").items()}
        params = {k: int(v) for k, v in p.items() if k not in ("start_ns", "end_ns")}
    except FileNotFoundError:
        raise SystemExit(f"no {path}: run `strand report stranded ... --dump-sql {results_dir}` first")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"{path} is not strand's params.json: {e}")
    # The tables the files read: their names as words, comments left out.
    text = " ".join(re.sub(r"--[^\n]*", "", open(os.path.join(SQL_DIR, n + ".sql")).read()) for n in names())
    read = {t: w for t, w in filters.items() if re.search(rf"\b{re.escape(t)}\b", text)}
    return params, read
