-- The event store and the tables around it.

-- The catalog of event types (seeded from workdev_pipeline/catalog.py by `workdev-pipeline migrate`).
CREATE TABLE event_schemas (
    event_type        text PRIMARY KEY CHECK (event_type ~ '^[a-z][a-z_]*\.[a-z][a-z_]*$'),
    event_category    text NOT NULL CHECK (event_category IN ('transaction', 'interaction', 'user_activity', 'content')),
    retention_days    integer NOT NULL CHECK (retention_days > 0),
    json_schema       jsonb NOT NULL CHECK (jsonb_typeof(json_schema) = 'object'),
    required_keys     text[] NOT NULL DEFAULT '{}',
    requires_user     boolean NOT NULL DEFAULT true,
    entity_type       text,
    amount_field      text,
    max_payload_bytes integer NOT NULL DEFAULT 32768 CHECK (max_payload_bytes > 0),
    description       text NOT NULL DEFAULT '',
    version           text NOT NULL,
    active            boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every event, range-partitioned by UTC month of its timestamp (monthly partitions are created ahead by
-- ensure_event_partitions(); a DEFAULT partition catches anything outside them so no insert ever fails).
--
-- tx_id is the inserting transaction's 64-bit id: the pipeline sweeps events by tx_id below the snapshot's
-- xmin, which is commit-order safe (a long transaction holding an early id cannot be skipped), and never
-- has to rewrite an event to mark it (processing status is derived, see the platform_events view).
--
-- Indexes, chosen for the queries we run and for the cost of every insert:
--   primary key (event_id, timestamp)  event lookups, idempotent re-sends; ids are UUIDv7 (time-ordered)
--   (user_id, timestamp)               a user's events: query_platform_events by user, GDPR erasure
--   BRIN timestamp / created_at / tx_id  date ranges, the seed's monitoring queries, the pipeline's sweep;
--                                      a few kB each, almost free on insert since rows arrive in order
-- No GIN index on event_data: none of our queries filters on payload contents, and measured here it
-- triples the cost of bulk inserts (COPY 15.7k vs 43.8k events/s) and adds 330 of ~1,600 bytes per event.
-- A query that needs one key should get an expression index on that key instead.
CREATE TABLE platform_event_store (
    event_id       uuid NOT NULL,
    event_type     text NOT NULL,
    event_category text NOT NULL,
    user_id        uuid,
    entity_type    text,
    entity_id      text,
    event_data     jsonb NOT NULL DEFAULT '{}',
    metadata       jsonb NOT NULL DEFAULT '{}',
    source         text NOT NULL DEFAULT 'app',
    "timestamp"    timestamptz NOT NULL,
    session_id     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    tx_id          bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    PRIMARY KEY (event_id, "timestamp")
) PARTITION BY RANGE ("timestamp");

CREATE TABLE platform_event_store_default PARTITION OF platform_event_store DEFAULT;

CREATE INDEX platform_event_store_user_idx ON platform_event_store (user_id, "timestamp") WHERE user_id IS NOT NULL;
CREATE INDEX platform_event_store_timestamp_brin ON platform_event_store USING brin ("timestamp");
CREATE INDEX platform_event_store_created_brin ON platform_event_store USING brin (created_at);
CREATE INDEX platform_event_store_tx_brin ON platform_event_store USING brin (tx_id);

-- Events that failed validation or enrichment, or exhausted their retries: the dead letter.
CREATE TABLE event_failures (
    event_id        uuid PRIMARY KEY,
    event_timestamp timestamptz NOT NULL,
    event_type      text NOT NULL,
    consumer        text NOT NULL DEFAULT 'pipeline',
    error_kind      text NOT NULL CHECK (error_kind IN ('validation', 'enrichment', 'transient')),
    error_message   text NOT NULL,
    retry_count     integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz
);
CREATE INDEX event_failures_open_idx ON event_failures (last_failed_at) WHERE resolved_at IS NULL;

-- How far each consumer (one per enabled warehouse) has swept the store, in transaction ids.
CREATE TABLE pipeline_watermarks (
    consumer     text PRIMARY KEY,
    tx_watermark bigint NOT NULL DEFAULT 0 CHECK (tx_watermark >= 0),
    enabled      boolean NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per completed sweep: which transaction ids it covered and when (gives processed_at).
CREATE TABLE ingestion_sweeps (
    sweep_id    bigserial PRIMARY KEY,
    consumer    text NOT NULL,
    tx_low      bigint NOT NULL,
    tx_high     bigint NOT NULL,
    events      bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz NOT NULL DEFAULT now(),
    CHECK (tx_high >= tx_low)
);
CREATE INDEX ingestion_sweeps_tx_idx ON ingestion_sweeps (tx_high);

-- Dashboard figures, each valid until expires_at.
CREATE TABLE platform_metrics_realtime (
    metric_key    text PRIMARY KEY,
    metric_value  numeric NOT NULL,
    dimensions    jsonb NOT NULL DEFAULT '{}',
    calculated_at timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CHECK (expires_at > calculated_at)
);
CREATE INDEX platform_metrics_realtime_expires_idx ON platform_metrics_realtime (expires_at);

-- Pre-computed hourly / daily / weekly figures per event type (exact distinct counts).
CREATE TABLE event_aggregations (
    aggregation_type text NOT NULL CHECK (aggregation_type IN ('hourly', 'daily', 'weekly')),
    period_start     timestamptz NOT NULL,
    period_end       timestamptz NOT NULL,
    event_type       text NOT NULL,
    event_category   text NOT NULL,
    total_events     bigint NOT NULL CHECK (total_events >= 0),
    unique_users     bigint NOT NULL CHECK (unique_users >= 0),
    unique_sessions  bigint NOT NULL CHECK (unique_sessions >= 0),
    amount_sum       numeric,
    computed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregation_type, period_start, event_type),
    CHECK (period_end > period_start)
);
CREATE INDEX event_aggregations_category_idx ON event_aggregations (aggregation_type, event_category, period_start);

-- One row per warehouse load.
CREATE TABLE warehouse_sync_status (
    sync_id          bigserial PRIMARY KEY,
    warehouse        text NOT NULL,
    partition_key    text,
    batch_id         text NOT NULL,
    run_id           text,
    status           text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    events_total     bigint NOT NULL DEFAULT 0,
    events_loaded    bigint NOT NULL DEFAULT 0,
    events_failed    bigint NOT NULL DEFAULT 0,
    bytes_written    bigint,
    duration_seconds numeric,
    error_message    text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX warehouse_sync_status_created_idx ON warehouse_sync_status (created_at DESC);
CREATE INDEX warehouse_sync_status_partition_idx ON warehouse_sync_status (warehouse, partition_key);

-- Users as the marketplace knows them. Enrichment reads the user_attributes view, never this table:
-- a deployment points the view at its own users table (CREATE OR REPLACE VIEW user_attributes ...).
CREATE TABLE user_profiles (
    user_id      uuid PRIMARY KEY,
    role         text NOT NULL CHECK (role IN ('client', 'developer', 'admin')),
    signed_up_at timestamptz NOT NULL,
    country      text CHECK (country ~ '^[A-Z]{2}$'),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW user_attributes AS
SELECT user_id, role AS user_role, signed_up_at, country
FROM user_profiles;

-- Producers' bulk loads are COPYed here, then validated and moved by emit_staged_events() in the same
-- transaction. Unlogged: its rows never outlive their transaction.
CREATE UNLOGGED TABLE event_ingest_staging (
    batch_id       uuid NOT NULL,
    ord            integer NOT NULL,
    event_id       uuid NOT NULL,
    id_supplied    boolean NOT NULL,
    event_type     text,
    user_id        uuid,
    entity_type    text,
    entity_id      text,
    event_data     jsonb,
    metadata       jsonb,
    source         text,
    "timestamp"    timestamptz,
    session_id     uuid
);
CREATE INDEX event_ingest_staging_batch_idx ON event_ingest_staging (batch_id);
