-- GPUs present and GPUs held by a job, per node and allocation bucket (from NVML
-- samples): the input of the topology-stranded (FGD) figure.
SELECT cluster, node,
       ts_ns - ts_ns % {{alloc_ns}} AS bucket_ns,
       COUNT(DISTINCT gpu_index) AS gpus,
       COUNT(DISTINCT CASE WHEN job_id IS NOT NULL THEN gpu_index END) AS held
FROM gpu_samples
GROUP BY cluster, node, ts_ns - ts_ns % {{alloc_ns}}
