#!/usr/bin/env python3
"""Commit cost on S3: strand's landing (one conditional PUT of the batch file,
If-None-Match: *) against a Delta Lake append (delta-rs, `write_deltalake`),
both against one local S3 server (moto), with the same batch.

    python3 -m venv /tmp/dl && /tmp/dl/bin/pip install deltalake pyarrow boto3 'moto[server]'
    /tmp/dl/bin/python bench/delta_commit.py BATCH.parquet [N]

Prints per-commit latency (median, p90) and S3 requests per commit, counted
from the server's request log."""
import io, os, socket, statistics, subprocess, sys, tempfile, time

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    batch_path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 50
    table = pq.read_table(batch_path, partitioning=None)
    # Delta stores microsecond timestamps for Spark; keep the comparison on the
    # same bytes by writing the times as int64 in both.
    table = pa.Table.from_arrays(
        [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns], names=table.column_names
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    body = buf.getvalue()
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = dict(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        s3 = boto3.client("s3", endpoint_url=url, **env)
        s3.create_bucket(Bucket="strand-bench")

        def requests():
            log.flush()
            with open(log.name) as f:
                return sum(1 for line in f if '" 20' in line or '" 30' in line or '" 40' in line or '" 41' in line)

        results = {}
        r0 = requests()
        t = []
        for i in range(n):
            a = time.perf_counter()
            s3.put_object(Bucket="strand-bench", Key=f"landing/batch-{i:06d}.parquet", Body=body, IfNoneMatch="*")
            t.append(time.perf_counter() - a)
        results["strand: conditional PUT"] = (t, (requests() - r0) / n)

        opts = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "conditional_put": "etag",
        }
        r0 = requests()
        t = []
        for i in range(n):
            a = time.perf_counter()
            write_deltalake("s3://strand-bench/delta", table, mode="append", storage_options=opts)
            t.append(time.perf_counter() - a)
        results["Delta append (delta-rs)"] = (t, (requests() - r0) / n)
        print(f"{n} commits of one {len(body)}-byte batch ({table.num_rows} rows), moto on loopback")
        print("| commit | median ms | p90 ms | S3 requests per commit |")
        print("|---|---:|---:|---:|")
        for k, (t, req) in results.items():
            t = sorted(t)
            print(f"| {k} | {statistics.median(t) * 1e3:.1f} | {t[int(len(t) * 0.9)] * 1e3:.1f} | {req:.1f} |")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
