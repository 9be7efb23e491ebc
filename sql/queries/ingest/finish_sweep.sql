UPDATE ingestion_sweeps
SET status = 'finished', finished_at = now(), events = %(events)s, events_failed = %(events_failed)s
WHERE sweep_id = %(sweep_id)s AND status = 'running'
