-- First and last sysfs sample of every InfiniBand/RoCE port in the range, with
-- its error and congestion counters; the increase is last − first.
WITH span AS (
  SELECT cluster, node, device, port, MIN(ts_ns) AS t0, MAX(ts_ns) AS t1
  FROM nic_samples
  GROUP BY cluster, node, device, port
)
SELECT n.cluster AS cluster, n.node AS node, n.device AS device, n.port AS port, n.ts_ns AS ts_ns,
       n.symbol_error_total AS symbol_error_total,
       n.link_downed_total AS link_downed_total,
       n.link_error_recovery_total AS link_error_recovery_total,
       n.port_rcv_errors_total AS port_rcv_errors_total,
       n.port_xmit_discards_total AS port_xmit_discards_total,
       n.port_xmit_wait_total AS port_xmit_wait_total
FROM span s
JOIN nic_samples n ON n.cluster = s.cluster AND n.node = s.node AND n.device = s.device AND n.port = s.port
WHERE n.ts_ns = s.t0 OR n.ts_ns = s.t1
