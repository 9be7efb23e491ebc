-- When each finished sweep of a consumer claimed its range: an event's ingested_at, so that a day rebuilt
-- later holds the very same rows (and files) as the sweeps wrote.
SELECT tx_low, tx_high, started_at FROM ingestion_sweeps
WHERE consumer = %(consumer)s AND status = 'finished'
ORDER BY tx_low
