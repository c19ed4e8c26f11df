-- Failure signals of every job: abnormal process exits, XID errors, NCCL aborts.
SELECT cluster, job_id, node, ts_ns, 'exit' AS kind,
       CAST(COALESCE(exit_code, 0) AS BIGINT) AS code,
       CAST(signal AS BIGINT) AS signal
FROM process_events
WHERE job_id IS NOT NULL AND kind = 'exit' AND (signal IS NOT NULL OR COALESCE(exit_code, 0) <> 0)
UNION ALL
SELECT cluster, job_id, node, ts_ns, 'xid' AS kind, CAST(xid AS BIGINT) AS code, CAST(NULL AS BIGINT) AS signal
FROM gpu_events
WHERE job_id IS NOT NULL AND kind = 'xid'
UNION ALL
SELECT cluster, job_id, node, enter_ns AS ts_ns, 'nccl_abort' AS kind, CAST(0 AS BIGINT) AS code, CAST(NULL AS BIGINT) AS signal
FROM nccl_calls
WHERE job_id IS NOT NULL AND op = 'comm_abort'
