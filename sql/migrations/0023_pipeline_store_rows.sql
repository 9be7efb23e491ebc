-- What the pipeline reads from the store: its columns as they are, no join, no casts to text.
--
-- pipeline_event_rows computed, on every read, the IP address and user agent out of metadata, metadata without
-- them, the user's role and tenure from user_attributes, and ids and JSON as text. Measured on 500,000 demo events
-- (backend CPU of a binary COPY, per 1,000,000 events; bench/README.md, "A cheap read"): the old view 2.82 against
-- 1.52 for the table, of which the join with user_attributes ~0.6, the uuid -> text casts ~0.4 and the JSON
-- functions 0.2-0.36. pipeline_store_rows keeps only the JSON functions (1.52, the same as the table); the driver
-- decodes the uuids and joins the user attributes in Arrow (ingest/pipeline_rows.py).
--
-- Not kept: the three values as STORED generated columns of the store. They saved ~0.3 CPU-s per 1,000,000 events
-- at each read and cost ~1 at each write (a binary COPY into the store 6.27 -> 7.36 backend CPU-s, emit_many
-- ~0.86x) and 28 % more store, and each event is read about once.
CREATE VIEW pipeline_store_rows AS
SELECT e.event_id, e.event_type, e.event_category, e.user_id, e.entity_type, e.entity_id, e.event_data,
       e.metadata - ARRAY['ip_address', 'user_agent'] AS metadata, e.metadata ->> 'ip_address' AS ip_address,
       e.metadata ->> 'user_agent' AS user_agent, e.source, e."timestamp", e.session_id, e.tx_id
FROM platform_event_store e;
GRANT SELECT ON pipeline_store_rows TO workdev_pipeline;

-- The same rows in SQL as the pipeline's Arrow batches hold them (ids and JSON as text, the user's role and tenure
-- joined): what earlier code reads, and the reference ingest/extract.py is tested against.
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
