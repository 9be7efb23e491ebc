-- The sweep a killed run left claimed but unfinished: it is redone over the same range.
SELECT sweep_id, tx_low, tx_high, started_at
FROM ingestion_sweeps
WHERE consumer = %(consumer)s AND status = 'running'
