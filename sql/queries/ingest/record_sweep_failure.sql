-- A run's attempts at a claimed sweep all failed: the sweep stays claimed (the next run redoes it, its events stay
-- pending) and counts the failed attempts (its events' retry_count).
UPDATE ingestion_sweeps SET retries = retries + %(retries)s
WHERE sweep_id = %(sweep_id)s AND status = 'running'
