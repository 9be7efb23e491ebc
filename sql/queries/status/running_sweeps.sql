-- Sweeps claimed and not finished, for how long, and whether a session holds their consumer's ingestion lock (the
-- session-level advisory lock every sweep runs under: LOCK_STATEMENT in workdev_pipeline/ingest/ingestor.py). A
-- sweep 'running' that no session holds the lock of was left by a killed run; the next sweep redoes it.
SELECT s.sweep_id,
       s.consumer,
       extract(epoch FROM now() - s.started_at)::float8 AS running_seconds,
       EXISTS (SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.classid = hashtext('workdev.ingest')::oid
                 AND l.objid = hashtext(s.consumer)::oid) AS lock_held
FROM ingestion_sweeps s
WHERE s.status = 'running'
ORDER BY s.sweep_id
