-- Every row's type, user, session, payload and metadata (JSON text): erasure's check hashes every string in them
-- and looks for the erased users' ids and values. Unproven on Redshift (JSON_SERIALIZE of SUPER; the stand-in
-- runs postgres_standin/payloads.sql).
SELECT event_type, user_id, session_id, JSON_SERIALIZE(event_data), JSON_SERIALIZE(metadata)
FROM {table}
