-- The latest retention run that changed something (not a dry run) and finished: what the check holds stores to.
SELECT retention_run_id, as_of, finished_at FROM retention_runs
WHERE status = 'finished' AND NOT dry_run
ORDER BY finished_at DESC
LIMIT 1
