-- The depth rule walks only payloads that could be too deep.
--
-- event_rejection's depth rule (0014) ran jsonb_too_deep, a jsonpath walk, on every event's event_data and
-- metadata: about a sixth of the validation's cost per batch (bench/README.md, "bench_emit.py"). A payload nested
-- deeper than 32 levels holds 33 nested containers, and in jsonb's binary form each takes at least 4 bytes of
-- header, and each but the outermost 4 more for its entry in its parent: at least 33 * 4 + 32 * 4 = 260 bytes, so
-- pg_column_size (the stored size, varlena header included) is more than 260 -- unless the value is compressed,
-- which pg_column_compression tells. Smaller uncompressed payloads (nearly all) skip the walk; the rule's outcome
-- is the same for every payload.

CREATE OR REPLACE FUNCTION event_rejection(
    p_schema event_schemas, p_event_type text, p_user_id uuid, p_event_data jsonb, p_metadata jsonb,
    p_timestamp timestamptz, p_entity_type text, p_entity_id text, p_source text
) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_event_type IS NULL OR p_event_type = '' THEN
            'WD001|event_type is required'
        WHEN (p_schema).event_type IS NULL THEN
            format('WD001|unknown event type %s (not registered in event_schemas)', quote_literal(left(p_event_type, 100)))
        WHEN NOT (p_schema).active THEN
            format('WD002|event type %s is inactive', quote_literal(p_event_type))
        WHEN p_event_data IS NULL OR jsonb_typeof(p_event_data) <> 'object' THEN
            format('WD003|event_data must be a JSON object, got %s', coalesce(jsonb_typeof(p_event_data), 'null'))
        WHEN p_metadata IS NOT NULL AND jsonb_typeof(p_metadata) <> 'object' THEN
            format('WD003|metadata must be a JSON object, got %s', jsonb_typeof(p_metadata))
        WHEN octet_length(p_event_data::text) > (p_schema).max_payload_bytes THEN
            format('WD004|event_data is %s bytes, over the %s-byte limit of %s',
                   octet_length(p_event_data::text), (p_schema).max_payload_bytes, quote_literal(p_event_type))
        WHEN p_metadata IS NOT NULL AND octet_length(p_metadata::text) > 8192 THEN
            format('WD004|metadata is %s bytes, over the 8192-byte limit', octet_length(p_metadata::text))
        WHEN (pg_column_size(p_event_data) > 260 OR pg_column_compression(p_event_data) IS NOT NULL)
             AND jsonb_too_deep(p_event_data) THEN
            'WD011|event_data is nested deeper than 32 levels'
        WHEN (pg_column_size(p_metadata) > 260 OR pg_column_compression(p_metadata) IS NOT NULL)
             AND jsonb_too_deep(p_metadata) THEN
            'WD011|metadata is nested deeper than 32 levels'
        WHEN NOT p_event_data ?& (p_schema).required_keys THEN
            format('WD005|event_data of %s lacks required keys: %s', quote_literal(p_event_type),
                   event_missing_keys(p_event_data, (p_schema).required_keys))
        WHEN (p_schema).requires_user AND p_user_id IS NULL THEN
            format('WD006|event type %s requires a user_id', quote_literal(p_event_type))
        WHEN p_timestamp > now() + interval '5 minutes' THEN
            format('WD007|timestamp %s is in the future (more than 5 minutes ahead of the server clock)', p_timestamp)
        WHEN p_timestamp < now() - make_interval(days => (p_schema).retention_days) THEN
            format('WD007|timestamp %s is older than the %s-day retention of %s',
                   p_timestamp, (p_schema).retention_days, quote_literal(p_event_type))
        WHEN length(p_entity_type) > 64 THEN 'WD008|entity_type is longer than 64 characters'
        WHEN length(p_entity_id) > 128 THEN 'WD008|entity_id is longer than 128 characters'
        WHEN length(p_source) > 64 THEN 'WD008|source is longer than 64 characters'
    END
$$;
