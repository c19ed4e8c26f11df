-- Where every GPU-second went, per GPU, job and trend bucket (DESIGN §4 categories
-- summed over `windows`), with the agent's estimated sync stalls replaced by the
-- exact ones of `collective_stalls` (capped by the window's exposed communication).
WITH exact AS (
  SELECT cluster, node, gpu_index,
         start_ns - start_ns % {{window_ns}} AS wstart,
         SUM(stall_ns) AS stall_ns
  FROM collective_stalls
  WHERE gpu_index IS NOT NULL
  GROUP BY cluster, node, gpu_index, start_ns - start_ns % {{window_ns}}
),
w AS (
  SELECT cluster, node, gpu_index, gpu_uuid, gpu_name, job_id, start_ns, end_ns,
         compute_ns, comm_exposed_ns, memcpy_exposed_ns, idle_ns, sync_stall_ns,
         sync_stall_estimated, hollow_busy_ns, wasted_progress_ns, reported_busy_ns,
         idle_host_bound_ns, idle_launch_gap_ns, idle_io_blocked_ns, idle_no_process_ns, idle_other_ns,
         start_ns - start_ns % {{window_ns}} AS wstart
  FROM windows
)
SELECT w.cluster AS cluster, w.node AS node, w.gpu_uuid AS gpu_uuid,
       COALESCE(w.gpu_name, 'unknown') AS gpu_name,
       COALESCE(w.job_id, '') AS job_id,
       w.start_ns - w.start_ns % {{bucket_ns}} AS bucket_ns,
       COUNT(*) AS windows,
       SUM(w.end_ns - w.start_ns) AS powered_ns,
       SUM(CASE WHEN w.compute_ns IS NULL THEN 0 ELSE w.end_ns - w.start_ns END) AS measured_ns,
       SUM(COALESCE(w.reported_busy_ns, 0)) AS reported_busy_ns,
       SUM(COALESCE(w.compute_ns, 0)) AS compute_ns,
       SUM(COALESCE(w.comm_exposed_ns, 0)) AS comm_exposed_ns,
       SUM(COALESCE(w.memcpy_exposed_ns, 0)) AS memcpy_exposed_ns,
       SUM(COALESCE(w.idle_ns, 0)) AS idle_ns,
       SUM(COALESCE(w.idle_host_bound_ns, 0)) AS idle_host_bound_ns,
       SUM(COALESCE(w.idle_launch_gap_ns, 0)) AS idle_launch_gap_ns,
       SUM(COALESCE(w.idle_io_blocked_ns, 0)) AS idle_io_blocked_ns,
       SUM(COALESCE(w.idle_no_process_ns, 0)) AS idle_no_process_ns,
       SUM(COALESCE(w.idle_other_ns, 0)) AS idle_other_ns,
       SUM(COALESCE(w.hollow_busy_ns, 0)) AS hollow_busy_ns,
       SUM(COALESCE(w.wasted_progress_ns, 0)) AS wasted_progress_agent_ns,
       SUM(COALESCE(w.sync_stall_ns, 0)) AS sync_stall_agent_ns,
       SUM(CASE WHEN w.sync_stall_estimated AND e.stall_ns IS NOT NULL
                THEN CASE WHEN e.stall_ns < COALESCE(w.comm_exposed_ns, 0) THEN e.stall_ns ELSE COALESCE(w.comm_exposed_ns, 0) END
                ELSE COALESCE(w.sync_stall_ns, 0) END) AS sync_stall_ns,
       SUM(CASE WHEN w.sync_stall_estimated AND e.stall_ns IS NULL THEN 1 ELSE 0 END) AS estimated_windows_left
FROM w
LEFT JOIN exact e
  ON e.cluster = w.cluster AND e.node = w.node AND e.gpu_index = w.gpu_index AND e.wstart = w.wstart
GROUP BY w.cluster, w.node, w.gpu_uuid, COALESCE(w.gpu_name, 'unknown'), COALESCE(w.job_id, ''),
         w.start_ns - w.start_ns % {{bucket_ns}}
