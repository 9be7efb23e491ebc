-- Replayed events that now pass: out of the dead letter, and their days queued for a rebuild (same transaction).
WITH resolved AS (
    UPDATE event_failures SET resolved_at = now()
    WHERE event_id = ANY(%(event_ids)s::uuid[]) AND resolved_at IS NULL
    RETURNING event_timestamp
)
INSERT INTO warehouse_rebuild_queue (consumer, event_date, reason)
SELECT DISTINCT %(consumer)s, (event_timestamp AT TIME ZONE 'UTC')::date, 'replay' FROM resolved
ON CONFLICT (consumer, event_date) DO NOTHING
