-- Every row's type, user, session, payload and metadata (JSON text): erasure's check hashes every string in them
-- and looks for the erased users' ids and values.
SELECT event_type, user_id, session_id, TO_JSON_STRING(event_data) AS event_data, TO_JSON_STRING(metadata) AS metadata
FROM ${table}
