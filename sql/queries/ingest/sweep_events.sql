-- The events of one sweep. Bounds come from session settings (set with bound parameters just before by
-- set_bounds): the Arrow driver streams only parameter-less statements in batches. Each bound is read once, in a
-- subquery (an InitPlan), not once per row: current_setting is only STABLE, and a cast of its text for each of
-- 1,000,000 rows costs the backend 0.2-0.6 CPU-s (bench/README.md, "The extraction's CPU").
SELECT * FROM pipeline_store_rows
WHERE tx_id >= (SELECT current_setting('workdev.tx_low')::bigint)
  AND tx_id < (SELECT current_setting('workdev.tx_high')::bigint)
