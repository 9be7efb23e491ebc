-- Events without a user in the erased user's sessions or from their device (logged-out browsing).
SELECT e.event_id, e."timestamp", e.event_type, e.session_id, e.event_data, e.metadata
FROM platform_event_store e
WHERE e.user_id IS NULL
  AND (e.session_id = ANY(%(session_ids)s::uuid[]) OR e.metadata ->> 'device_fingerprint' = ANY(%(devices)s::text[]))
  AND e.event_id <> ALL(%(exclude)s::uuid[])
