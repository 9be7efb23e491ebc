-- event_aggregations in Redshift: AGGREGATION_SCHEMA (workdev_pipeline/lake/aggregations.py), one row per
-- aggregation type, period, event type and category -- what PostgreSQL's event_aggregations holds.
-- DISTSTYLE ALL: a small table (a few thousand rows a day at most), so a copy on every node keeps joins with
-- it local. COMPOUND SORTKEY(aggregation_type, period_start): every replace and every read is one type's range
-- of periods; the leading sort key column stays RAW, AZ64 for numbers and timestamps, BYTEDICT for the
-- low-cardinality strings. amount_sum: exact when it fits NUMERIC(38, 9), else NULL with amount_overflow true
-- (PostgreSQL holds the exact sum); amount_overflow came later, last: ensure_table adds it to an older table.
CREATE TABLE IF NOT EXISTS {table} (
    aggregation_type VARCHAR(16) NOT NULL ENCODE RAW,
    period_start TIMESTAMPTZ NOT NULL ENCODE AZ64,
    period_end TIMESTAMPTZ NOT NULL ENCODE AZ64,
    event_type VARCHAR(128) NOT NULL ENCODE BYTEDICT,
    event_category VARCHAR(64) NOT NULL ENCODE BYTEDICT,
    total_events BIGINT NOT NULL ENCODE AZ64,
    unique_users BIGINT NOT NULL ENCODE AZ64,
    unique_sessions BIGINT NOT NULL ENCODE AZ64,
    amount_sum NUMERIC(38, 9) ENCODE AZ64,
    computed_at TIMESTAMPTZ NOT NULL ENCODE AZ64,
    amount_overflow BOOLEAN ENCODE ZSTD
)
DISTSTYLE ALL
COMPOUND SORTKEY (aggregation_type, period_start)
