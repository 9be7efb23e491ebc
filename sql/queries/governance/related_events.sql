-- In one scan of the store, the events an erasure touches besides the user's own: those without a user in the
-- user's sessions or from their device (in_session), and those whose payload holds the user's id or one of their
-- identifying values as text (LIKE patterns built from the values' JSON-escaped forms). Metadata is the client's
-- context (IP address, user agent, platform, device), never a reference to another user: not scanned here (the
-- proof looks there too).
SELECT e.event_id, e."timestamp", e.event_type, e.session_id, e.event_data, e.metadata,
       e.user_id IS NULL AND (e.session_id = ANY(%(session_ids)s::uuid[])
                              OR e.metadata ->> 'device_fingerprint' = ANY(%(devices)s::text[])) AS in_session
FROM platform_event_store e
WHERE ((e.user_id IS NULL AND (e.session_id = ANY(%(session_ids)s::uuid[])
                               OR (cardinality(%(devices)s::text[]) > 0
                                   AND e.metadata ->> 'device_fingerprint' = ANY(%(devices)s::text[]))))
       OR e.event_data::text LIKE ANY(%(patterns)s::text[]))
  AND e.event_id <> ALL(%(exclude)s::uuid[])
