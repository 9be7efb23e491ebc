-- Work waiting in the queues every sweep (rebuild: days to rewrite) and every erasure run (refresh: erased events
-- whose rows a warehouse must re-derive) drain: items and the oldest one's age, by queue and consumer.
SELECT 'rebuild' AS queue, consumer, count(*) AS items,
       extract(epoch FROM now() - min(requested_at))::float8 AS oldest_seconds
FROM warehouse_rebuild_queue
GROUP BY consumer
UNION ALL
SELECT 'refresh', consumer, count(*), extract(epoch FROM now() - min(queued_at))::float8
FROM warehouse_event_refresh
GROUP BY consumer
ORDER BY 1, 2
