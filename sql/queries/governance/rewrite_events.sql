-- Erased events written back: payload and metadata, and for the anonymised ones no user and no session. Matched on
-- the partitions' unique key (event_id, UTC day): with event_id alone the planner hash-joins a scan of every event.
UPDATE platform_event_store e
SET event_data = u.event_data,
    metadata = u.metadata,
    user_id = CASE WHEN u.anonymise THEN NULL ELSE e.user_id END,
    session_id = CASE WHEN u.anonymise THEN NULL ELSE e.session_id END
FROM unnest(%(event_ids)s::uuid[], %(timestamps)s::timestamptz[], %(event_data)s::jsonb[], %(metadata)s::jsonb[],
            %(anonymise)s::boolean[]) AS u(event_id, "timestamp", event_data, metadata, anonymise)
WHERE e.event_id = u.event_id AND e."timestamp" = u."timestamp"
  AND (e."timestamp" AT TIME ZONE 'UTC')::date = (u."timestamp" AT TIME ZONE 'UTC')::date
