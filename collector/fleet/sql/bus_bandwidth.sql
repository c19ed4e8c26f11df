-- Achieved bus bandwidth per communicator, operation, communicator size, message
-- size class and time bucket (device-timed instances only).
SELECT cluster, comm_hash, op, nranks, size_class,
       start_ns - start_ns % {{bw_bucket_ns}} AS bucket_ns,
       MAX(job_id) AS job_id,
       COUNT(*) AS samples,
       MEDIAN(bus_bw_bytes_per_s) AS median_bus_bw,
       SUM(transfer_ns) AS transfer_ns,
       MIN(start_ns) AS first_ns,
       MAX(end_ns) AS last_ns
FROM collective_stalls
WHERE time_source = 'kernel' AND bus_bw_bytes_per_s IS NOT NULL AND size_class IS NOT NULL
GROUP BY cluster, comm_hash, op, nranks, size_class, start_ns - start_ns % {{bw_bucket_ns}}
