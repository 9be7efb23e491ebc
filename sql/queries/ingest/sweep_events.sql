-- The events of one sweep. Bounds come from session settings (set with bound parameters just before by
-- set_bounds): the Arrow driver streams only parameter-less statements in batches.
SELECT * FROM pipeline_store_rows
WHERE tx_id >= current_setting('workdev.tx_low')::bigint
  AND tx_id < current_setting('workdev.tx_high')::bigint
