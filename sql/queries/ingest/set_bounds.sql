-- Bounds for the streamed statements that follow on the same (Arrow driver) connection; $n parameters.
-- $6: the connection's max_parallel_workers_per_gather, NULL for the server's own (bench/README.md, "Parallel
-- workers"): the sweep reads its range in physical order and streams it, where workers only add a hop through their
-- tuple queues and take the cores the pipeline's own process needs; a day's read sorts the day, which they share.
-- Each parameter is cast to text: the driver declares a string parameter with the first type it found taking text's
-- binary form (text or refcursor, in the order its catalog query returned them: a parallel scan of pg_type can
-- return refcursor last, and set_config(text, refcursor, boolean) does not exist).
SELECT set_config('workdev.tx_low', $1::text, false),
       set_config('workdev.tx_high', $2::text, false),
       set_config('workdev.day_start', $3::text, false),
       set_config('workdev.day_end', $4::text, false),
       set_config('workdev.consumer', $5::text, false),
       set_config('max_parallel_workers_per_gather',
                  coalesce($6::text, (SELECT reset_val FROM pg_settings WHERE name = 'max_parallel_workers_per_gather')),
                  false)
