-- The queued events of one UTC day as the store holds them now (anonymised), read as the pipeline reads every
-- event (pipeline_store_rows), for the warehouse day being rewritten: only those the consumer has swept (below its
-- watermark) and not in the dead letter, exactly what a rebuild of the day would write for them. Bounds from
-- session settings, set with bound parameters just before (see ingest/set_bounds), each read once (see
-- ingest/sweep_events).
SELECT v.*
FROM warehouse_event_refresh r
JOIN pipeline_store_rows v ON v.event_id = r.event_id AND v."timestamp" = r.event_timestamp
WHERE r.consumer = (SELECT current_setting('workdev.consumer'))
  AND r.event_timestamp >= (SELECT current_setting('workdev.day_start')::timestamptz)
  AND r.event_timestamp < (SELECT current_setting('workdev.day_end')::timestamptz)
  AND v.tx_id < (SELECT current_setting('workdev.tx_high')::bigint)
  AND NOT EXISTS (SELECT 1 FROM event_failures f WHERE f.event_id = v.event_id AND f.resolved_at IS NULL)
ORDER BY v."timestamp", v.event_id
