-- Bookkeeping rows of expired events, per table (see delete_expired_bookkeeping for the rules).
WITH c AS (SELECT * FROM unnest(%(event_types)s::text[], %(cutoffs)s::timestamptz[]) AS c(event_type, cutoff))
SELECT
    (SELECT count(*) FROM warehouse_event_refresh r
     WHERE r.event_timestamp < %(oldest_cutoff)s
        OR EXISTS (SELECT 1 FROM c WHERE c.event_type = r.event_type AND r.event_timestamp < c.cutoff)),
    (SELECT count(*) FROM warehouse_rebuild_queue q WHERE q.event_date < %(oldest_day)s),
    (SELECT count(*) FROM ingestion_sweeps s
     WHERE s.status = 'finished' AND s.started_at < %(oldest_cutoff)s - interval '5 minutes'),
    (SELECT count(*) FROM warehouse_sync_status w
     WHERE (w.partition_key ~ '^\d{4}-\d{2}-\d{2}$' AND w.partition_key < %(oldest_day_text)s)
        OR (w.partition_key IS NULL AND w.created_at < %(oldest_cutoff)s))
