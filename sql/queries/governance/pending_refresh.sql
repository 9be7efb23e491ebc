-- Erasure work still queued for a warehouse, per request.
SELECT request_id, consumer, count(*) FROM warehouse_event_refresh GROUP BY request_id, consumer
