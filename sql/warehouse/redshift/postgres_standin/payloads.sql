-- The stand-in's form of payloads.sql (JSONB as text instead of JSON_SERIALIZE of SUPER).
SELECT event_type, user_id, session_id, CAST(event_data AS TEXT), CAST(metadata AS TEXT)
FROM {table}
