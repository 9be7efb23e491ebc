-- A sweep succeeded: the consumer is healthy again.
UPDATE pipeline_watermarks
SET failed_runs = 0, last_error_kind = NULL, last_error = NULL, last_failed_at = NULL
WHERE consumer = %(consumer)s AND failed_runs > 0
