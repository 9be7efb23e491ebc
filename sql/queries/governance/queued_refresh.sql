-- The events whose rows this warehouse must re-derive from PostgreSQL (see warehouse_event_refresh).
SELECT event_id, event_timestamp, request_id
FROM warehouse_event_refresh
WHERE consumer = %(consumer)s
ORDER BY event_timestamp
