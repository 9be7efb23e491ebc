-- Bounds for the streamed statements that follow on the same (Arrow driver) connection; $n parameters.
-- Parallel workers off for them: the rows stream through one COPY to one reader, so workers only add a hop through
-- their tuple queues and take the cores the pipeline's own process needs (bench/README.md, "Parallel workers").
SELECT set_config('workdev.tx_low', $1, false),
       set_config('workdev.tx_high', $2, false),
       set_config('workdev.day_start', $3, false),
       set_config('workdev.day_end', $4, false),
       set_config('workdev.consumer', $5, false),
       set_config('max_parallel_workers_per_gather', '0', false)
