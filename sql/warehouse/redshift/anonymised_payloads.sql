-- Payload and metadata (JSON text) of the rows without a user of the types given ({event_types}: bound
-- parameters), which require one: only an erasure leaves them so. Unproven on Redshift (JSON_SERIALIZE of SUPER;
-- the stand-in runs postgres_standin/anonymised_payloads.sql).
SELECT JSON_SERIALIZE(event_data), JSON_SERIALIZE(metadata)
FROM {table}
WHERE user_id IS NULL AND event_type IN ({event_types})
