-- The IP address, user agent and metadata without them computed when the pipeline reads the store, not stored.
--
-- 0023 stored them as generated columns. Measured (bench/README.md, "A cheap read"): they saved ~0.3 CPU-s per
-- 1,000,000 events at each read of the store, cost ~0.9-1.1 at each write (a binary COPY into the store 6.27 ->
-- 7.36 backend CPU-s, emit_many ~0.86x) and made the store 28 % larger. Each event is read about once (one lake
-- consumer; rebuilds are rare), so they cost more than they saved. The read's saving that counted -- no join, no
-- casts to text -- stays: pipeline_store_rows computes the three values from metadata (1.52 CPU-s per 1,000,000,
-- the same as a read of the table) and the driver does the rest in Arrow (ingest/pipeline_rows.py).
-- Dropping the columns rewrites nothing (PostgreSQL marks them dropped).
CREATE OR REPLACE VIEW pipeline_store_rows AS
SELECT e.event_id, e.event_type, e.event_category, e.user_id, e.entity_type, e.entity_id, e.event_data,
       e.metadata - ARRAY['ip_address', 'user_agent'] AS metadata, e.metadata ->> 'ip_address' AS ip_address,
       e.metadata ->> 'user_agent' AS user_agent, e.source, e."timestamp", e.session_id, e.tx_id
FROM platform_event_store e;

CREATE OR REPLACE VIEW pipeline_event_rows AS
SELECT e.event_id::text AS event_id,
       e.event_type,
       e.event_category,
       e.user_id::text AS user_id,
       u.user_role,
       floor(extract(epoch FROM e."timestamp" - u.signed_up_at) / 86400)::int AS user_tenure_days,
       e.entity_type,
       e.entity_id,
       e.event_data::text AS event_data,
       e.metadata::text AS metadata,
       e.ip_address,
       e.user_agent,
       e.source,
       e."timestamp",
       e.session_id::text AS session_id,
       e.tx_id,
       e.event_id AS event_uuid
FROM pipeline_store_rows e
LEFT JOIN user_attributes u ON u.user_id = e.user_id;

ALTER TABLE platform_event_store
    DROP COLUMN ip_address,
    DROP COLUMN user_agent,
    DROP COLUMN warehouse_metadata;
