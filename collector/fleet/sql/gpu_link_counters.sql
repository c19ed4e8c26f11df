-- First and last NVML sample of every GPU in the range, with its error counters
-- (NVLink per link, PCIe replay, uncorrected ECC); the increase is last − first.
-- The small per-GPU span comes first: it is the side engines hold in memory.
WITH span AS (
  SELECT cluster, node, gpu_uuid, MIN(ts_ns) AS t0, MAX(ts_ns) AS t1
  FROM gpu_samples
  GROUP BY cluster, node, gpu_uuid
)
SELECT g.cluster AS cluster, g.node AS node, g.gpu_uuid AS gpu_uuid, g.gpu_index AS gpu_index,
       g.job_id AS job_id, g.ts_ns AS ts_ns,
       g.pcie_replay_total AS pcie_replay_total,
       g.ecc_uncorrected_total AS ecc_uncorrected_total,
       g.nvlink_crc_errors_total AS nvlink_crc_errors_total,
       g.nvlink_replay_errors_total AS nvlink_replay_errors_total,
       g.nvlink_recovery_errors_total AS nvlink_recovery_errors_total
FROM span s
JOIN gpu_samples g ON g.cluster = s.cluster AND g.node = s.node AND g.gpu_uuid = s.gpu_uuid
WHERE g.ts_ns = s.t0 OR g.ts_ns = s.t1
