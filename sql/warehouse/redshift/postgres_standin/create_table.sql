-- The PostgreSQL stand-in's platform_events (tests only): ../create_table.sql with SUPER -> JSONB and without
-- DISTKEY / SORTKEY / ENCODE, which PostgreSQL cannot parse. Same columns, same order, one per line.
CREATE TABLE IF NOT EXISTS {table} (
    event_id VARCHAR(64) NOT NULL,
    event_type VARCHAR(128) NOT NULL,
    event_category VARCHAR(64) NOT NULL,
    user_id VARCHAR(64),
    user_role VARCHAR(64),
    user_tenure_days INTEGER,
    entity_type VARCHAR(128),
    entity_id VARCHAR(1024),
    event_data JSONB,
    metadata JSONB,
    source VARCHAR(64),
    "timestamp" TIMESTAMPTZ NOT NULL,
    session_id VARCHAR(64),
    geo_location JSONB,
    device_info JSONB,
    ingested_at TIMESTAMPTZ NOT NULL,
    amount NUMERIC(38, 9),
    amount_overflow BOOLEAN
)
