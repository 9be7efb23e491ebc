-- Least privilege. Functions are executable by PUBLIC by default in PostgreSQL: take that back first.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO workdev_app, workdev_pipeline, workdev_analyst;

-- Application: emit, bulk-emit through the staging table (insert only), and the bounded read functions.
GRANT EXECUTE ON FUNCTION
    emit_platform_event(text, uuid, text, text, jsonb, jsonb, text, uuid, uuid, timestamptz),
    emit_staged_events(uuid, boolean),
    query_platform_events(timestamptz, timestamptz, text[], uuid, integer, integer),
    count_platform_events(timestamptz, timestamptz, text[], uuid),
    query_event_aggregations(text, date, date, text, text[]),
    event_range_totals(date, date, text, text[]),
    get_dashboard_metrics(interval)
TO workdev_app;
GRANT INSERT ON event_ingest_staging TO workdev_app;
GRANT SELECT (event_type, event_category, description, active) ON event_schemas TO workdev_app;

-- Pipeline: reads every event, writes its own bookkeeping, maintains partitions and metrics.
GRANT SELECT ON platform_event_store, platform_events, event_schemas, user_attributes, user_profiles TO workdev_pipeline;
GRANT UPDATE (user_id, entity_type, entity_id, event_data, metadata, source, session_id), DELETE
    ON platform_event_store TO workdev_pipeline;
GRANT UPDATE, DELETE ON platform_events TO workdev_pipeline;
GRANT SELECT, INSERT, UPDATE, DELETE ON event_failures, pipeline_watermarks, ingestion_sweeps,
    platform_metrics_realtime, event_aggregations, warehouse_sync_status TO workdev_pipeline;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO workdev_pipeline;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO workdev_pipeline;

-- Analysts: read-only, everything.
GRANT SELECT ON platform_events, event_schemas, event_failures, pipeline_watermarks, ingestion_sweeps,
    platform_metrics_realtime, event_aggregations, warehouse_sync_status, user_attributes TO workdev_analyst;
GRANT EXECUTE ON FUNCTION
    query_platform_events(timestamptz, timestamptz, text[], uuid, integer, integer),
    count_platform_events(timestamptz, timestamptz, text[], uuid),
    query_event_aggregations(text, date, date, text, text[]),
    event_range_totals(date, date, text, text[])
TO workdev_analyst;
