-- Every event of one UTC day that the consumer has swept (below its watermark), except those held in the
-- dead letter: what the warehouse's day partition must hold. Bounds from session settings, each read once (see
-- sweep_events: per row, the two timestamptz casts cost a 1,000,000-event day 0.6 s of each scanning backend).
SELECT * FROM pipeline_store_rows v
WHERE v."timestamp" >= (SELECT current_setting('workdev.day_start')::timestamptz)
  AND v."timestamp" < (SELECT current_setting('workdev.day_end')::timestamptz)
  AND v.tx_id < (SELECT current_setting('workdev.tx_high')::bigint)
  AND NOT EXISTS (SELECT 1 FROM event_failures f
                  WHERE f.event_id = v.event_id AND f.resolved_at IS NULL)
ORDER BY v."timestamp", v.event_id
