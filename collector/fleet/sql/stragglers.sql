-- Per rank of every communicator: how often it arrived last, by how much, and the
-- stall it caused on its peers (from the exact `collective_stalls`).
SELECT cluster, comm_hash, rank, node,
       MAX(gpu_index) AS gpu_index,
       MAX(job_id) AS job_id,
       MAX(nranks) AS nranks,
       COUNT(*) AS instances,
       SUM(CASE WHEN is_last THEN 1 ELSE 0 END) AS times_last,
       MEDIAN(CASE WHEN is_last THEN CAST(lateness_ns AS DOUBLE) END) AS median_lateness_ns,
       SUM(COALESCE(caused_stall_ns, 0)) AS caused_stall_ns,
       SUM(stall_ns) AS suffered_stall_ns,
       MIN(start_ns) AS first_ns,
       MAX(end_ns) AS last_ns
FROM collective_stalls
GROUP BY cluster, comm_hash, rank, node
