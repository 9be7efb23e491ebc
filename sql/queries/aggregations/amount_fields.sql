-- The money field of each financial event type (catalog.py's amount_field, synced into event_schemas).
SELECT event_type, amount_field
FROM event_schemas
WHERE amount_field IS NOT NULL
ORDER BY event_type
