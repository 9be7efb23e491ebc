UPDATE retention_runs SET status = 'failed', finished_at = now(), error = %(error)s
WHERE retention_run_id = %(retention_run_id)s
