-- A sweep done (its events in the lake): its counts, and the failed attempts it took (its events' retry_count).
UPDATE ingestion_sweeps
SET status = 'finished', finished_at = now(), events = %(events)s, events_failed = %(events_failed)s,
    retries = retries + %(retries)s
WHERE sweep_id = %(sweep_id)s AND status = 'running'
