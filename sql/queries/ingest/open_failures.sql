-- The dead letter of one consumer, each event as the pipeline reads it. Consumer from session settings.
SELECT v.* FROM event_failures f
JOIN pipeline_store_rows v ON v.event_id = f.event_id AND v."timestamp" = f.event_timestamp
WHERE f.resolved_at IS NULL AND f.consumer = (SELECT current_setting('workdev.consumer'))
