-- Storage I/O of every job's processes per window (checkpoint writes and restore reads).
SELECT cluster, job_id, (ts_ns - 1) - (ts_ns - 1) % {{window_ns}} AS wstart,
       SUM(COALESCE(write_bytes, 0)) AS write_bytes,
       SUM(COALESCE(read_bytes, 0)) AS read_bytes
FROM process_samples
WHERE job_id IS NOT NULL
GROUP BY cluster, job_id, (ts_ns - 1) - (ts_ns - 1) % {{window_ns}}
