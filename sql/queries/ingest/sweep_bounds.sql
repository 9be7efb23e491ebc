-- The next range to sweep: from the consumer's watermark up to the oldest transaction still running
-- (everything below the snapshot's xmin has committed or aborted, so no event there can appear later),
-- and whether any event lies in it.
WITH w AS (SELECT tx_watermark FROM pipeline_watermarks WHERE consumer = %(consumer)s),
     x AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
SELECT w.tx_watermark AS tx_low,
       x.xmin AS tx_high,
       EXISTS (SELECT 1 FROM platform_event_store e
               WHERE e.tx_id >= w.tx_watermark AND e.tx_id < x.xmin) AS has_events
FROM w, x
