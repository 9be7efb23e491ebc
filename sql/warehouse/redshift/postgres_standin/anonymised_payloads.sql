-- The stand-in's form of anonymised_payloads.sql (JSONB as text instead of JSON_SERIALIZE of SUPER).
SELECT CAST(event_data AS TEXT), CAST(metadata AS TEXT)
FROM {table}
WHERE user_id IS NULL AND event_type IN ({event_types})
