-- Per node of every communicator spanning nodes: how often the last rank was on
-- it, its lead over the other nodes, and the stall it caused on their ranks.
SELECT cluster, comm_hash, node,
       MAX(job_id) AS job_id,
       MAX(nranks) AS nranks,
       COUNT(DISTINCT rank) AS ranks,
       COUNT(DISTINCT seq) AS instances,
       SUM(CASE WHEN is_last THEN 1 ELSE 0 END) AS times_last,
       MEDIAN(CASE WHEN is_last THEN CAST(node_lateness_ns AS DOUBLE) END) AS median_lateness_ns,
       SUM(COALESCE(node_caused_stall_ns, 0)) AS caused_stall_ns,
       MIN(start_ns) AS first_ns,
       MAX(end_ns) AS last_ns
FROM collective_stalls
GROUP BY cluster, comm_hash, node
