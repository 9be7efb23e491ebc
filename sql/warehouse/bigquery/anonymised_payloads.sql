-- Payload and metadata (JSON text) of the rows without a user of types that require one: only an erasure leaves
-- them so; erasure's check looks for personal keys and erased values in them.
SELECT TO_JSON_STRING(event_data) AS event_data, TO_JSON_STRING(metadata) AS metadata
FROM ${table}
WHERE user_id IS NULL AND event_type IN UNNEST(@event_types)
