-- Queue events for a warehouse's refresh (in the transaction that anonymises them).
INSERT INTO warehouse_event_refresh (consumer, event_id, event_timestamp, event_type, request_id, reason)
SELECT %(consumer)s, q.event_id, q.event_timestamp, q.event_type, %(request_id)s, 'erasure'
FROM unnest(%(event_ids)s::uuid[], %(timestamps)s::timestamptz[], %(event_types)s::text[])
     AS q(event_id, event_timestamp, event_type)
ON CONFLICT (consumer, event_id) DO NOTHING
