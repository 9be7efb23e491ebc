-- Why the consumer's last sweep failed (a transient fault, after its retries), and how many runs in a row did.
UPDATE pipeline_watermarks
SET failed_runs = failed_runs + 1, last_error_kind = %(error_kind)s, last_error = %(error)s, last_failed_at = now()
WHERE consumer = %(consumer)s
