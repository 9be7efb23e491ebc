-- What one UTC day of the warehouse must hold, by event type (see day_events).
SELECT e.event_type, count(*) AS events
FROM platform_event_store e
WHERE e."timestamp" >= %(day_start)s AND e."timestamp" < %(day_end)s
  AND e.tx_id < (SELECT tx_watermark FROM pipeline_watermarks WHERE consumer = %(consumer)s)
  AND NOT EXISTS (SELECT 1 FROM event_failures f WHERE f.event_id = e.event_id AND f.resolved_at IS NULL)
GROUP BY e.event_type
