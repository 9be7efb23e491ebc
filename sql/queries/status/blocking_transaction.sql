-- The oldest transaction of this database still open that holds sweeps back: a sweep takes transactions below
-- the oldest one in progress (ingest/sweep_bounds.sql), so events committed after it started wait until it ends.
-- Reported only while such an event exists; its process id, state and age (no query text, no user).
WITH open_xids AS (
    SELECT x::text::bigint AS xid FROM pg_snapshot_xip(pg_current_snapshot()) AS x
)
SELECT a.pid,
       a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS open_seconds
FROM open_xids o
JOIN pg_stat_activity a ON a.backend_xid::text = mod(o.xid, 4294967296)::text
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND EXISTS (SELECT 1 FROM platform_event_store e WHERE e.tx_id > o.xid)
ORDER BY o.xid
LIMIT 1
