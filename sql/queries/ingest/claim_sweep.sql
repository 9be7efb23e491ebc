INSERT INTO ingestion_sweeps (consumer, tx_low, tx_high, status, run_id, started_at, finished_at)
VALUES (%(consumer)s, %(tx_low)s, %(tx_high)s, 'running', %(run_id)s, now(), NULL)
RETURNING sweep_id, started_at
