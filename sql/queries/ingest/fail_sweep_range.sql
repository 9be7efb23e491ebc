-- A sweep whose writes kept failing after its retries: every event of its range goes to the dead letter
-- (kept for replay), except those already there for a reason of their own.
INSERT INTO event_failures (event_id, event_timestamp, event_type, consumer, error_kind, error_message, retry_count)
SELECT e.event_id, e."timestamp", e.event_type, %(consumer)s, 'transient', %(message)s, %(retry_count)s
FROM platform_event_store e
WHERE e.tx_id >= %(tx_low)s AND e.tx_id < %(tx_high)s
ON CONFLICT (event_id) DO NOTHING
