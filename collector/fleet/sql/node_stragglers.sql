-- Per node of every communicator: how often the last rank was on it, its lead over
-- the latest arrival on another node, and the stall it caused on the other nodes'
-- ranks (NodeStat of strand_analysis::findings::interconnect::Stragglers).
SELECT cluster, comm_hash, node,
       MAX(comm_name) AS comm_name,
       MAX(job_id) AS job_id,
       MAX(nranks) AS nranks,
       COUNT(DISTINCT rank) AS ranks,
       COUNT(DISTINCT seq) AS instances,
       SUM(CASE WHEN is_last THEN 1 ELSE 0 END) AS times_last,
       SUM(CASE WHEN is_last THEN COALESCE(node_lateness_ns, 0) ELSE 0 END) AS lateness_sum_ns,
       SUM(COALESCE(node_caused_stall_ns, 0)) AS caused_stall_ns,
       MIN(start_ns) AS first_ns,
       MAX(end_ns) AS last_ns
FROM collective_stalls
GROUP BY cluster, comm_hash, node
