-- Every job's GPUs, per window: activity and idleness (restarts, downtime,
-- inferred checkpoints, wasted progress). JobWindow of
-- strand_analysis::findings::recovery (rollup::job_windows computes the same in Rust).
SELECT cluster, job_id, start_ns - start_ns % {{window_ns}} AS wstart,
       COUNT(*) AS gpus,
       COUNT(DISTINCT node) AS nodes,
       SUM(end_ns - start_ns) AS powered_ns,
       SUM(CASE WHEN split_source = 'kernels' THEN end_ns - start_ns ELSE 0 END) AS kernels_ns,
       SUM(COALESCE(compute_ns, 0)) AS compute_ns,
       SUM(COALESCE(comm_exposed_ns, 0) + COALESCE(memcpy_exposed_ns, 0)) AS other_busy_ns,
       SUM(CASE WHEN split_source = 'kernels' THEN COALESCE(compute_ns, 0) + COALESCE(comm_exposed_ns, 0) + COALESCE(memcpy_exposed_ns, 0)
                WHEN split_source = 'nvml' THEN COALESCE(reported_busy_ns, 0) ELSE 0 END) AS busy_ns,
       SUM(COALESCE(idle_ns, 0)) AS idle_ns,
       SUM(COALESCE(idle_no_process_ns, 0)) AS idle_no_process_ns
FROM windows
WHERE job_id IS NOT NULL
GROUP BY cluster, job_id, start_ns - start_ns % {{window_ns}}
