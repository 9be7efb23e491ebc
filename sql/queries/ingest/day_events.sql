-- Every event of one UTC day that the consumer has swept (below its watermark), except those held in the
-- dead letter: what the warehouse's day partition must hold. Bounds from session settings (see sweep_events).
SELECT * FROM pipeline_store_rows v
WHERE v."timestamp" >= current_setting('workdev.day_start')::timestamptz
  AND v."timestamp" < current_setting('workdev.day_end')::timestamptz
  AND v.tx_id < current_setting('workdev.tx_high')::bigint
  AND NOT EXISTS (SELECT 1 FROM event_failures f
                  WHERE f.event_id = v.event_id AND f.resolved_at IS NULL)
ORDER BY v."timestamp", v.event_id
