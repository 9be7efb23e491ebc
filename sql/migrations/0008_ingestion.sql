-- The ingestion pipeline's books.
--
-- A sweep is claimed (status 'running', its transaction-id range fixed) before anything is written, so a
-- run killed at any point is redone over exactly the same range and rewrites exactly the same files.
ALTER TABLE ingestion_sweeps
    ADD COLUMN status text NOT NULL DEFAULT 'finished' CHECK (status IN ('running', 'finished')),
    ADD COLUMN run_id text,
    ADD COLUMN events_failed bigint NOT NULL DEFAULT 0,
    ALTER COLUMN finished_at DROP NOT NULL;  -- NULL while running (a claim sets it so)
CREATE UNIQUE INDEX ingestion_sweeps_one_running ON ingestion_sweeps (consumer) WHERE status = 'running';

-- Days of a warehouse to rebuild from PostgreSQL (replayed events are written this way): a row is queued
-- in the transaction that resolves the failures and removed once the day has been rewritten, so a crash in
-- between leaves the work queued, never lost.
CREATE TABLE warehouse_rebuild_queue (
    consumer     text NOT NULL,
    event_date   date NOT NULL,
    reason       text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_date)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON warehouse_rebuild_queue TO workdev_pipeline;
GRANT SELECT ON warehouse_rebuild_queue TO workdev_analyst;

-- The pipeline's replays read a failure's event by (event_id, timestamp).
CREATE INDEX event_failures_consumer_open_idx ON event_failures (consumer) WHERE resolved_at IS NULL;

-- Events as the pipeline reads them: ids as text, enriched with what PostgreSQL knows (the user's role and
-- tenure from user_attributes), the IP address and user agent split out of metadata for the enrichment that
-- follows (and removed from the metadata that reaches the warehouses). Filters on tx_id, timestamp and
-- event_uuid are pushed through to the store's indexes; tx_id and event_uuid are bookkeeping, not loaded.
CREATE VIEW pipeline_event_rows AS
SELECT e.event_id::text AS event_id,
       e.event_type,
       e.event_category,
       e.user_id::text AS user_id,
       u.user_role,
       floor(extract(epoch FROM e."timestamp" - u.signed_up_at) / 86400)::int AS user_tenure_days,
       e.entity_type,
       e.entity_id,
       e.event_data::text AS event_data,
       (e.metadata - 'ip_address' - 'user_agent')::text AS metadata,
       e.metadata ->> 'ip_address' AS ip_address,
       e.metadata ->> 'user_agent' AS user_agent,
       e.source,
       e."timestamp",
       e.session_id::text AS session_id,
       e.tx_id,
       e.event_id AS event_uuid
FROM platform_event_store e
LEFT JOIN user_attributes u ON u.user_id = e.user_id;
GRANT SELECT ON pipeline_event_rows TO workdev_pipeline, workdev_analyst;
