-- What each warehouse engine (BigQuery, Redshift) has received from the lake (lake/platform_events, a Delta
-- table): the lake version it last delivered, recorded only after the engine's loads are done, so a delivery
-- killed in between is redone from the same version (its loads are idempotent: MERGE on event_id, atomic day
-- replaces). The next delivery loads what the lake committed after lake_version. lake_table_id is the Delta
-- table's id: a lake re-created under the same URI (versions restart) is delivered whole again.
CREATE TABLE lake_deliveries (
    engine          text PRIMARY KEY,
    lake_version    bigint NOT NULL CHECK (lake_version >= 0),
    lake_table_id   text,
    mode            text NOT NULL CHECK (mode IN ('incremental', 'full')),
    days_replaced   integer NOT NULL DEFAULT 0,
    days_merged     integer NOT NULL DEFAULT 0,
    rows_loaded     bigint NOT NULL DEFAULT 0,
    delivered_at    timestamptz NOT NULL DEFAULT now(),
    run_id          text
);
GRANT SELECT, INSERT, UPDATE, DELETE ON lake_deliveries TO workdev_pipeline;
GRANT SELECT ON lake_deliveries TO workdev_analyst;
