UPDATE retention_runs
SET status = 'finished', finished_at = now(), postgres_events = %(postgres_events)s,
    warehouse_events = %(warehouse_events)s, partitions_dropped = %(partitions_dropped)s,
    partitions_trimmed = %(partitions_trimmed)s, dead_letter_rows = %(dead_letter_rows)s,
    bookkeeping_rows = %(bookkeeping_rows)s, warehouse_days = %(warehouse_days)s,
    ledger_hashes_expired = %(ledger_hashes_expired)s
WHERE retention_run_id = %(retention_run_id)s
