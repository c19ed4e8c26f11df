-- Per rank of every communicator: how often it arrived last, by how much, and the
-- stall it caused on its peers (from the exact `collective_stalls`). The state of
-- strand_analysis::findings::interconnect::Stragglers (RankStat), which the
-- postmortem computes row by row from the same matcher's rows.
SELECT cluster, comm_hash, rank, node,
       MAX(comm_name) AS comm_name,
       MAX(gpu_index) AS gpu_index,
       MAX(job_id) AS job_id,
       MAX(nranks) AS nranks,
       COUNT(*) AS instances,
       SUM(CASE WHEN is_last THEN 1 ELSE 0 END) AS times_last,
       SUM(CASE WHEN is_last THEN COALESCE(lateness_ns, 0) ELSE 0 END) AS lateness_sum_ns,
       SUM(COALESCE(caused_stall_ns, 0)) AS caused_stall_ns,
       SUM(stall_ns) AS suffered_stall_ns,
       MIN(start_ns) AS first_ns,
       MAX(end_ns) AS last_ns
FROM collective_stalls
GROUP BY cluster, comm_hash, rank, node
