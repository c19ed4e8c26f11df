-- Achieved bus bandwidth per communicator, operation, communicator size, message
-- size class and time bucket (device-timed instances only).
-- The median is the mean of the one or two middle values in order (what
-- MEDIAN gives over DOUBLE), written with window functions that every engine
-- has: 2·rn ∈ {n, n+1, n+2} selects exactly the middle ranks 1..n.
WITH ranked AS (
    SELECT cluster, comm_hash, op, nranks, size_class, job_id, transfer_ns, start_ns, end_ns,
           start_ns - start_ns % {{bw_bucket_ns}} AS bucket_ns,
           bus_bw_bytes_per_s AS bw,
           ROW_NUMBER() OVER (PARTITION BY cluster, comm_hash, op, nranks, size_class, start_ns - start_ns % {{bw_bucket_ns}}
                              ORDER BY bus_bw_bytes_per_s) AS rn,
           COUNT(*) OVER (PARTITION BY cluster, comm_hash, op, nranks, size_class, start_ns - start_ns % {{bw_bucket_ns}}) AS n
    FROM collective_stalls
    WHERE time_source = 'kernel' AND bus_bw_bytes_per_s IS NOT NULL AND size_class IS NOT NULL
)
SELECT cluster, comm_hash, op, nranks, size_class, bucket_ns,
       MAX(job_id) AS job_id,
       COUNT(*) AS samples,
       AVG(CASE WHEN 2 * rn IN (n, n + 1, n + 2) THEN bw END) AS median_bus_bw,
       SUM(transfer_ns) AS transfer_ns,
       MIN(start_ns) AS first_ns,
       MAX(end_ns) AS last_ns
FROM ranked
GROUP BY cluster, comm_hash, op, nranks, size_class, bucket_ns
