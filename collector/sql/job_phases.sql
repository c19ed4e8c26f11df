-- Steps and checkpoint phases of every job, merged over ranks.
SELECT cluster, job_id, phase, step, source,
       MIN(start_ns) AS start_ns,
       MAX(end_ns) AS end_ns,
       COUNT(*) AS ranks
FROM steps
WHERE job_id IS NOT NULL
GROUP BY cluster, job_id, phase, step, source
