-- Other events whose payload or metadata holds the erased user's id or one of their identifying values (as text
-- inside their JSON: LIKE patterns built from the values' JSON-escaped forms), in one scan of the store.
SELECT e.event_id, e."timestamp", e.event_type, e.session_id, e.event_data, e.metadata
FROM platform_event_store e
WHERE (e.event_data::text LIKE ANY(%(patterns)s::text[]) OR e.metadata::text LIKE ANY(%(patterns)s::text[]))
  AND e.event_id <> ALL(%(exclude)s::uuid[])
