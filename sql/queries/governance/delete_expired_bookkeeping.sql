-- Bookkeeping rows of expired events:
--   warehouse_event_refresh  queued refreshes of expired events (retention removes their warehouse rows anyway)
--   warehouse_rebuild_queue  rebuilds of days before the oldest cut-off (every event of them is gone)
--   ingestion_sweeps         sweeps that started before the oldest cut-off (less the 5 minutes an event's timestamp
--                            may run ahead of the clock): every event they covered is older, so gone
--   warehouse_sync_status    loads of days before the oldest cut-off (and day-less ones as old)
WITH c AS (SELECT * FROM unnest(%(event_types)s::text[], %(cutoffs)s::timestamptz[]) AS c(event_type, cutoff)),
refresh AS (
    DELETE FROM warehouse_event_refresh r
    WHERE r.event_timestamp < %(oldest_cutoff)s
       OR EXISTS (SELECT 1 FROM c WHERE c.event_type = r.event_type AND r.event_timestamp < c.cutoff)
    RETURNING 1),
rebuilds AS (DELETE FROM warehouse_rebuild_queue q WHERE q.event_date < %(oldest_day)s RETURNING 1),
sweeps AS (
    DELETE FROM ingestion_sweeps s
    WHERE s.status = 'finished' AND s.started_at < %(oldest_cutoff)s - interval '5 minutes'
    RETURNING 1),
syncs AS (
    DELETE FROM warehouse_sync_status w
    WHERE (w.partition_key ~ '^\d{4}-\d{2}-\d{2}$' AND w.partition_key < %(oldest_day_text)s)
       OR (w.partition_key IS NULL AND w.created_at < %(oldest_cutoff)s)
    RETURNING 1)
SELECT (SELECT count(*) FROM refresh), (SELECT count(*) FROM rebuilds), (SELECT count(*) FROM sweeps),
       (SELECT count(*) FROM syncs)
