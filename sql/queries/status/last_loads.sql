-- The last load of each warehouse (the lake's sweeps and rebuilds: one row per day written, under one batch_id):
-- failed if any of its rows failed, how long ago it ended, the events it loaded and failed.
WITH last AS (
    SELECT DISTINCT ON (warehouse) warehouse, batch_id
    FROM warehouse_sync_status
    ORDER BY warehouse, sync_id DESC
)
SELECT w.warehouse,
       CASE WHEN bool_or(w.status = 'failed') THEN 'failed' WHEN bool_or(w.status = 'running') THEN 'running'
            ELSE 'succeeded' END AS status,
       extract(epoch FROM now() - max(coalesce(w.finished_at, w.started_at)))::float8 AS seconds_ago,
       sum(w.events_loaded)::bigint AS events_loaded,
       sum(w.events_failed)::bigint AS events_failed
FROM warehouse_sync_status w
JOIN last USING (warehouse, batch_id)
GROUP BY w.warehouse
ORDER BY w.warehouse
