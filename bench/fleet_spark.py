#!/usr/bin/env python3
"""The fleet report's SQL (collector/fleet/sql/*.sql) on Apache Spark, for a
fleet whose data one machine cannot read in time (docs/fleet-scale.md).
strand computes the exact stalls and renders; Spark runs the twelve
aggregations where the data lives:

    strand report stranded --data ROOT --from A --to B --store --stalls-only --dump-sql RESULTS
    spark-submit --py-files bench/fleet_sql.py bench/fleet_spark.py --data ROOT --out RESULTS
    strand report stranded --from-results RESULTS --from A --to B --out report/

The first step stores `collective_stalls` in the dataset and writes
RESULTS/stalls.json, RESULTS/params.json (the range and the queries'
parameters: this job runs the SQL with exactly those) and RESULTS/schemas/
(each table's columns, for tables with no files). This job writes
RESULTS/<query>.jsonl, one directory of JSON lines part files per SQL file.
ROOT is any path Spark reads (a directory, hdfs://, s3a:// with the usual
Hadoop settings).

Local: `python3 bench/fleet_spark.py --master local[2] ...` (pip install
pyspark; a JRE 17+).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet_sql import load_params, names, render  # noqa: E402


def table_view(spark, root, schemas, table, where):
    """`table` limited to the range: every Parquet file under ROOT/<table>
    (compacted hours, stored stalls, an agent's or import's directories;
    Spark skips `_landing`-free names starting with `_` or `.`), or, with no
    file, an empty table of strand's columns."""
    from pyspark.sql.utils import AnalysisException

    path = root.rstrip("/") + "/" + table
    try:
        df = spark.read.option("recursiveFileLookup", "true").option("mergeSchema", "true").parquet(path)
    except AnalysisException as e:
        if "PATH_NOT_FOUND" not in str(e) and "UNABLE_TO_INFER_SCHEMA" not in str(e) and "does not exist" not in str(e):
            raise
        empty = os.path.join(schemas, table + ".parquet")
        if not os.path.exists(empty):
            raise SystemExit(
                f"table {table} has no files under {path}, and there is no {empty}: "
                "run `strand report stranded --stalls-only --store --dump-sql` into the same --out first"
            )
        print(f"{table:18s} no files: empty, strand's columns", file=sys.stderr)
        df = spark.read.parquet(empty)
    df.where(where).createOrReplaceTempView(table)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the dataset's root")
    p.add_argument("--out", required=True, help="results directory (the --dump-sql of the --stalls-only step)")
    p.add_argument("--schemas", help="empty files of each table (default: OUT/schemas)")
    p.add_argument("--master", help="Spark master when run without spark-submit, e.g. local[2]")
    p.add_argument("--driver-memory", help="with --master: the driver's heap, e.g. 4g")
    p.add_argument("--shuffle-partitions", type=int, default=0, help="spark.sql.shuffle.partitions (0: Spark's)")
    a = p.parse_args()
    params, filters = load_params(a.out)

    from pyspark.sql import SparkSession

    b = SparkSession.builder.appName("strand report stranded (SQL)")
    if a.master:
        b = b.master(a.master).config("spark.ui.enabled", "false")
        if a.driver_memory:
            b = b.config("spark.driver.memory", a.driver_memory)
    # Spark has no nanosecond timestamp: schema 2's TIMESTAMP(NANOS) read as
    # bigint ns, which is what the SQL expects (as schema 1's files hold).
    b = b.config("spark.sql.legacy.parquet.nanosAsLong", "true").config("spark.sql.session.timeZone", "UTC")
    b = b.config("spark.ui.showConsoleProgress", "false")
    if a.shuffle_partitions:
        b = b.config("spark.sql.shuffle.partitions", str(a.shuffle_partitions))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    schemas = a.schemas or os.path.join(a.out, "schemas")
    for table, where in filters.items():
        table_view(spark, a.data, schemas, table, where)
    for name in names():
        df = spark.sql(render(name, params))
        # One directory of JSON lines per query; nulls written, so that every
        # column is in every line (strand reads it as --dump-sql writes it).
        df.write.mode("overwrite").option("ignoreNullFields", "false").json(os.path.join(a.out, name + ".jsonl"))
        print(f"{name:18s} written", file=sys.stderr)
    spark.stop()


if __name__ == "__main__":
    main()
