-- One warehouse day rewritten: its queued events are done.
DELETE FROM warehouse_event_refresh
WHERE consumer = %(consumer)s AND event_id = ANY(%(event_ids)s::uuid[])
