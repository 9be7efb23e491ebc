-- The erased user's own events, locked: those still carrying their id, and those the seed's statement already
-- anonymised through the view (gdpr_erasure_inbox).
SELECT e.event_id, e."timestamp", e.event_type, e.session_id, e.event_data, e.metadata
FROM platform_event_store e
WHERE e.user_id = %(user_id)s
UNION
SELECT e.event_id, e."timestamp", e.event_type, e.session_id, e.event_data, e.metadata
FROM gdpr_erasure_inbox i
JOIN platform_event_store e ON e.event_id = i.event_id AND e."timestamp" = i.event_timestamp
WHERE i.user_id = %(user_id)s
