-- The PostgreSQL stand-in's event_aggregations (tests only): ../create_aggregations_table.sql without
-- DISTSTYLE / SORTKEY / ENCODE. Same columns, same order.
CREATE TABLE IF NOT EXISTS {table} (
    aggregation_type VARCHAR(16) NOT NULL,
    period_start TIMESTAMPTZ NOT NULL,
    period_end TIMESTAMPTZ NOT NULL,
    event_type VARCHAR(128) NOT NULL,
    event_category VARCHAR(64) NOT NULL,
    total_events BIGINT NOT NULL,
    unique_users BIGINT NOT NULL,
    unique_sessions BIGINT NOT NULL,
    amount_sum NUMERIC(38, 9),
    computed_at TIMESTAMPTZ NOT NULL,
    amount_overflow BOOLEAN
)
