-- The workload's job shapes: GPUs each job holds on each node it runs on.
SELECT cluster, job_id, node, COUNT(DISTINCT gpu_index) AS gpus
FROM gpu_samples
WHERE job_id IS NOT NULL
GROUP BY cluster, job_id, node
