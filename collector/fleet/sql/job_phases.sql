-- Steps and checkpoint phases of every job, as rank 0 saw them (every rank
-- runs the same steps; rank 0 exists in every job). Grouped by process too, so
-- a step re-run after a restart is a second row, not one span over the outage.
SELECT cluster, job_id, phase, step, source, pid,
       MIN(start_ns) AS start_ns,
       MAX(end_ns) AS end_ns,
       COUNT(*) AS rows_merged
FROM steps
WHERE job_id IS NOT NULL AND (rank = 0 OR rank IS NULL)
GROUP BY cluster, job_id, phase, step, source, pid
