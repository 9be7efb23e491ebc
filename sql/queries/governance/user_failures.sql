-- The dead letter's rows of the given events.
SELECT event_id, error_message FROM event_failures WHERE event_id = ANY(%(event_ids)s::uuid[])
