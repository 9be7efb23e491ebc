-- Events whose payload holds one of the given values as text (LIKE patterns built from the values' JSON-escaped
-- forms): a second look, for identifying values first seen on the user's logged-out events.
SELECT e.event_id, e."timestamp", e.event_type, e.session_id, e.event_data, e.metadata
FROM platform_event_store e
WHERE e.event_data::text LIKE ANY(%(patterns)s::text[])
  AND e.event_id <> ALL(%(exclude)s::uuid[])
