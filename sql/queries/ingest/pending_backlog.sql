-- The backlog a consumer has not swept yet: how many events, and how old the oldest is.
WITH w AS (SELECT coalesce((SELECT tx_watermark FROM pipeline_watermarks WHERE consumer = %(consumer)s), 0) AS tx)
SELECT count(*) AS pending,
       extract(epoch FROM now() - min(e.created_at))::float8 AS oldest_pending_seconds,
       (SELECT count(*) FROM event_failures f WHERE f.resolved_at IS NULL AND f.consumer = %(consumer)s) AS failed
FROM platform_event_store e, w
WHERE e.tx_id >= w.tx
