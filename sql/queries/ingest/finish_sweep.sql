-- A sweep done (its events in the lake): its counts, the failed attempts it took (its events' retry_count) and the
-- lake version holding its events (NULL: it committed nothing), which every enabled engine must deliver before they
-- count as processed.
UPDATE ingestion_sweeps
SET status = 'finished', finished_at = now(), events = %(events)s, events_failed = %(events_failed)s,
    retries = retries + %(retries)s, lake_version = %(lake_version)s
WHERE sweep_id = %(sweep_id)s AND status = 'running'
