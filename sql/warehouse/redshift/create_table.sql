-- platform_events in Redshift: the seed's warehouse schema (WAREHOUSE_SCHEMA in ingest/schema.py), one column
-- per line (ensure_table reads the column definitions from here to add columns the schema gained).
--
-- DISTKEY(event_id): every load is a merge joining staging to this table on event_id (a staging table made
-- with LIKE inherits the DISTKEY, so the join is collocated: DS_DIST_NONE), and the duplicate check groups by
-- event_id without redistribution. event_id is unique, so slices stay even; user_id would skew: it is NULL for
-- system events and for every event a GDPR erasure anonymizes (the seed's statement sets user_id = NULL).
-- COMPOUND SORTKEY("timestamp", event_type): every statement of the pipeline (merge, day replace, counts,
-- parity) and the hourly/daily/weekly aggregations are bounded by a timestamp range, which zone maps prune to
-- the day's blocks; event_type second serves the per-day counts by type and the aggregations' GROUP BY type.
-- ENCODE: the leading sort key column stays RAW (compressing it defeats range-restricted scans); BYTEDICT for
-- the low-cardinality strings (event types, categories, roles, sources), AZ64 for integers and timestamps,
-- ZSTD for ids and free text. SUPER holds event_data/metadata (JSON objects) and the enrichment structs
-- geo_location {country, region, city} and device_info {device_type, browser, os} as SUPER objects.
-- amount: the event type's amount field, exact (NUMERIC(38, 9), the lake's decimal128(38, 9)); NULL with
-- amount_overflow true when it does not fit (event_data keeps every digit). Added last (older tables gain them).
CREATE TABLE IF NOT EXISTS {table} (
    event_id VARCHAR(64) NOT NULL ENCODE ZSTD,
    event_type VARCHAR(128) NOT NULL ENCODE BYTEDICT,
    event_category VARCHAR(64) NOT NULL ENCODE BYTEDICT,
    user_id VARCHAR(64) ENCODE ZSTD,
    user_role VARCHAR(64) ENCODE BYTEDICT,
    user_tenure_days INTEGER ENCODE AZ64,
    entity_type VARCHAR(128) ENCODE BYTEDICT,
    entity_id VARCHAR(1024) ENCODE ZSTD,
    event_data SUPER,
    metadata SUPER,
    source VARCHAR(64) ENCODE BYTEDICT,
    "timestamp" TIMESTAMPTZ NOT NULL ENCODE RAW,
    session_id VARCHAR(64) ENCODE ZSTD,
    geo_location SUPER,
    device_info SUPER,
    ingested_at TIMESTAMPTZ NOT NULL ENCODE AZ64,
    amount NUMERIC(38, 9) ENCODE AZ64,
    amount_overflow BOOLEAN ENCODE ZSTD
)
DISTSTYLE KEY
DISTKEY (event_id)
COMPOUND SORTKEY ("timestamp", event_type)
