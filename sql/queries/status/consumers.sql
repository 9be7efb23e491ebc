-- The sweep lag of each enabled consumer of the event store (and of the lake's consumer before its first sweep):
-- its watermark, the events not swept yet and the age of the oldest, when its last sweep finished, and the sweeps
-- that failed transiently since its last good one (with the kind of the last fault). Ages are seconds before now(),
-- the database's clock.
WITH c AS (
    SELECT consumer, tx_watermark, failed_runs, last_error_kind FROM pipeline_watermarks WHERE enabled
    UNION ALL
    SELECT %(consumer)s, 0, 0, NULL
    WHERE NOT EXISTS (SELECT 1 FROM pipeline_watermarks WHERE consumer = %(consumer)s)
)
SELECT c.consumer,
       c.tx_watermark,
       b.pending,
       b.oldest_pending_seconds,
       (SELECT extract(epoch FROM now() - s.finished_at)::float8
        FROM ingestion_sweeps s
        WHERE s.consumer = c.consumer AND s.status = 'finished'
        ORDER BY s.sweep_id DESC LIMIT 1) AS last_sweep_seconds,
       c.failed_runs,
       c.last_error_kind
FROM c
CROSS JOIN LATERAL (
    SELECT count(*) AS pending, extract(epoch FROM now() - min(e.created_at))::float8 AS oldest_pending_seconds
    FROM platform_event_store e
    WHERE e.tx_id >= c.tx_watermark
) b
ORDER BY c.consumer
