INSERT INTO retention_runs (run_id, as_of, dry_run, cutoffs)
VALUES (%(run_id)s, %(as_of)s, %(dry_run)s, %(cutoffs)s)
RETURNING retention_run_id
