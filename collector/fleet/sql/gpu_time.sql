-- Where every GPU-second went, per GPU, job and trend bucket: the state columns of the
-- one accounting (analysis/src/accounting.rs, GENERATED from it: do not edit by hand).
-- Windows whose sync stall the agent estimated take the exact one of their window cell.
WITH e AS (
  SELECT cluster, node, gpu_index, start_ns - start_ns % {{window_ns}} AS wstart, SUM(stall_ns) AS stall_ns
  FROM collective_stalls
  WHERE gpu_index IS NOT NULL
  GROUP BY cluster, node, gpu_index, start_ns - start_ns % {{window_ns}}
)
SELECT w.cluster AS cluster, w.node AS node, w.gpu_index AS gpu_index, w.gpu_uuid AS gpu_uuid,
       COALESCE(w.gpu_name, 'unknown') AS gpu_name, COALESCE(w.job_id, '') AS job_id,
       w.start_ns - w.start_ns % {{bucket_ns}} AS bucket_ns,
       SUM(1) AS windows,
       SUM((w.end_ns - w.start_ns)) AS powered_ns,
       SUM(CASE WHEN w.split_source = 'kernels' THEN w.end_ns - w.start_ns ELSE 0 END) AS kernels_ns,
       SUM(CASE WHEN w.split_source = 'nvml' THEN w.end_ns - w.start_ns ELSE 0 END) AS nvml_ns,
       SUM(COALESCE(w.compute_ns, 0)) AS compute_ns,
       SUM(CASE WHEN w.split_source = 'kernels' THEN COALESCE(w.compute_ns, 0) - COALESCE(w.hollow_busy_ns, 0) ELSE 0 END) AS productive_compute_ns,
       SUM(COALESCE(w.comm_ns, 0)) AS comm_ns,
       SUM(COALESCE(w.comm_overlapped_ns, 0)) AS comm_overlapped_ns,
       SUM(COALESCE(w.comm_exposed_ns, 0)) AS comm_exposed_ns,
       SUM(COALESCE(CASE WHEN (e.stall_ns IS NOT NULL AND COALESCE(w.sync_stall_estimated, TRUE) AND w.comm_exposed_ns IS NOT NULL) THEN CASE WHEN e.stall_ns < 0 THEN 0 WHEN e.stall_ns < (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) THEN e.stall_ns ELSE (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) END ELSE w.sync_stall_ns END, 0)) AS sync_stall_ns,
       SUM(CASE WHEN (e.stall_ns IS NOT NULL AND COALESCE(w.sync_stall_estimated, TRUE) AND w.comm_exposed_ns IS NOT NULL) THEN 0 WHEN w.sync_stall_estimated THEN COALESCE(w.sync_stall_ns, 0) ELSE 0 END) AS sync_stall_estimated_ns,
       SUM(CASE WHEN (CASE WHEN (e.stall_ns IS NOT NULL AND COALESCE(w.sync_stall_estimated, TRUE) AND w.comm_exposed_ns IS NOT NULL) THEN CASE WHEN e.stall_ns < 0 THEN 0 WHEN e.stall_ns < (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) THEN e.stall_ns ELSE (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) END ELSE w.sync_stall_ns END) IS NULL THEN 0 ELSE COALESCE(w.comm_exposed_ns, 0) - COALESCE(w.comm_unidentified_ns, 0) - (CASE WHEN (e.stall_ns IS NOT NULL AND COALESCE(w.sync_stall_estimated, TRUE) AND w.comm_exposed_ns IS NOT NULL) THEN CASE WHEN e.stall_ns < 0 THEN 0 WHEN e.stall_ns < (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) THEN e.stall_ns ELSE (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) END ELSE w.sync_stall_ns END) END) AS comm_transfer_ns,
       SUM(CASE WHEN (CASE WHEN (e.stall_ns IS NOT NULL AND COALESCE(w.sync_stall_estimated, TRUE) AND w.comm_exposed_ns IS NOT NULL) THEN CASE WHEN e.stall_ns < 0 THEN 0 WHEN e.stall_ns < (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) THEN e.stall_ns ELSE (w.comm_exposed_ns - COALESCE(w.comm_unidentified_ns, 0)) END ELSE w.sync_stall_ns END) IS NULL THEN COALESCE(w.comm_exposed_ns, 0) ELSE COALESCE(w.comm_unidentified_ns, 0) END) AS comm_split_unknown_ns,
       SUM(COALESCE(w.memcpy_exposed_ns, 0)) AS memcpy_exposed_ns,
       SUM(CASE WHEN w.split_source = 'nvml' THEN COALESCE(w.reported_busy_ns, 0) - COALESCE(w.hollow_busy_ns, 0) ELSE 0 END) AS busy_unclassified_ns,
       SUM(CASE WHEN w.split_source IS NULL THEN 0 ELSE COALESCE(w.hollow_busy_ns, 0) END) AS hollow_busy_ns,
       SUM(COALESCE(w.idle_ns, 0)) AS idle_ns,
       SUM(COALESCE(w.idle_host_bound_ns, 0)) AS idle_host_bound_ns,
       SUM(COALESCE(w.idle_launch_gap_ns, 0)) AS idle_launch_gap_ns,
       SUM(COALESCE(w.idle_io_blocked_ns, 0)) AS idle_io_blocked_ns,
       SUM(COALESCE(w.idle_no_process_ns, 0)) AS idle_no_process_ns,
       SUM(COALESCE(w.idle_other_ns, 0)) AS idle_other_ns,
       SUM(CASE WHEN w.split_source = 'kernels' THEN 0 WHEN w.split_source = 'nvml' THEN (w.end_ns - w.start_ns) - COALESCE(w.reported_busy_ns, 0) - COALESCE(w.idle_ns, 0) ELSE w.end_ns - w.start_ns END) AS unmeasured_ns,
       SUM(COALESCE(w.reported_busy_ns, 0)) AS reported_busy_ns,
       SUM(CASE WHEN w.reported_utilization_ratio IS NULL THEN 0 ELSE w.end_ns - w.start_ns END) AS reported_ns,
       SUM(COALESCE(w.host_sync_blocked_ns, 0)) AS host_sync_blocked_ns,
       SUM(COALESCE(w.kernel_count, 0)) AS kernel_count,
       SUM(CASE WHEN w.model_flops IS NOT NULL AND w.peak_flops_per_s IS NOT NULL THEN w.model_flops ELSE 0.0 END) AS model_flops,
       SUM(CASE WHEN w.model_flops IS NOT NULL AND w.peak_flops_per_s IS NOT NULL THEN w.peak_flops_per_s * CAST(w.end_ns - w.start_ns AS DOUBLE) * 1e-9 ELSE 0.0 END) AS peak_flop_budget,
       SUM(COALESCE(w.tensor_estimate * CAST(w.end_ns - w.start_ns AS DOUBLE), 0.0)) AS tensor_estimate_weighted,
       SUM(CASE WHEN w.tensor_estimate IS NULL THEN 0 ELSE w.end_ns - w.start_ns END) AS tensor_estimate_ns,
       SUM(COALESCE(w.sm_active_ratio * CAST(w.end_ns - w.start_ns AS DOUBLE), 0.0)) AS sm_active_weighted,
       SUM(CASE WHEN w.sm_active_ratio IS NULL THEN 0 ELSE w.end_ns - w.start_ns END) AS sm_active_ns
FROM windows w
LEFT JOIN e
  ON e.cluster = w.cluster AND e.node = w.node AND e.gpu_index = w.gpu_index
  AND e.wstart = w.start_ns - w.start_ns % {{window_ns}}
GROUP BY w.cluster, w.node, w.gpu_index, w.gpu_uuid, COALESCE(w.gpu_name, 'unknown'), COALESCE(w.job_id, ''),
         w.start_ns - w.start_ns % {{bucket_ns}}
