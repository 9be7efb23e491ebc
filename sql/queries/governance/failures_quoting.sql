-- Dead-letter rows of the given events, or whose message quotes one of the erased user's values.
SELECT event_id, error_message FROM event_failures
WHERE event_id = ANY(%(event_ids)s::uuid[]) OR error_message LIKE ANY(%(patterns)s::text[])
