-- Dead-letter events that failed validation or enrichment (one row per event; a repeat updates it).
INSERT INTO event_failures (event_id, event_timestamp, event_type, consumer, error_kind, error_message, retry_count)
SELECT f.event_id, f.event_timestamp, f.event_type, %(consumer)s, %(error_kind)s, f.error_message, %(retry_count)s
FROM unnest(%(event_ids)s::uuid[], %(timestamps)s::timestamptz[], %(event_types)s::text[], %(messages)s::text[])
     AS f(event_id, event_timestamp, event_type, error_message)
ON CONFLICT (event_id) DO UPDATE
SET error_kind = excluded.error_kind, error_message = excluded.error_message,
    retry_count = greatest(event_failures.retry_count, excluded.retry_count),
    last_failed_at = now(), resolved_at = NULL, lake_version = NULL
