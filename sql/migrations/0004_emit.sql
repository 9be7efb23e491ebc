-- Emitting events: one at a time (emit_platform_event) or in bulk (COPY into event_ingest_staging, then
-- emit_staged_events). Both validate with the same event_rejection() rules, so a bulk load is exactly
-- as strict as the function. Errors carry their own SQLSTATE (class WD) so clients can tell them apart:
--   WD001 unknown event type        WD005 required keys missing     WD008 field too long
--   WD002 inactive event type       WD006 user_id required          WD009 batch error (COPY / staging)
--   WD003 not a JSON object         WD007 timestamp out of range
--   WD004 payload too large

-- Time-ordered UUIDs (RFC 9562 version 7): index-friendly primary keys. (PostgreSQL 18 has uuidv7().)
CREATE FUNCTION uuid_generate_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- How far apart in time two sends of one producer-supplied event_id may be and still be recognised as
-- the same event (a retry after a timeout). Within it, a re-sent id never creates a second row.
CREATE FUNCTION event_id_dedup_window() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '7 days' $$;

-- Advisory-lock bucket serialising concurrent sends of the same producer-supplied event_id.
CREATE FUNCTION event_id_lock_bucket(p_event_id uuid) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT abs(hashtext(p_event_id::text) % 128) $$;

CREATE FUNCTION event_missing_keys(p_event_data jsonb, p_required text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(k, ', ' ORDER BY k)
    FROM unnest(p_required) AS k
    WHERE NOT p_event_data ? k
$$;

-- Why an event would be rejected, as 'WDnnn|message', or NULL when it is acceptable.
-- p_schema is the event_schemas row of p_event_type (NULL when the type is not registered).
-- Kept free of sub-queries so the planner inlines it into the bulk validation query.
CREATE FUNCTION event_rejection(
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

CREATE FUNCTION raise_event_rejection(p_reason text, p_detail text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = left(p_reason, 5), MESSAGE = substr(p_reason, 7),
            HINT = 'nothing was written';
    END IF;
    RAISE EXCEPTION USING ERRCODE = left(p_reason, 5), MESSAGE = substr(p_reason, 7),
        DETAIL = p_detail, HINT = 'nothing of this batch was written';
END
$$;

-- Emit one event; returns its event_id. Validates (see event_rejection), derives the category, stamps
-- the timestamp when none is given. A producer may supply p_event_id: re-sending it returns the same id
-- and writes nothing.
CREATE FUNCTION emit_platform_event(
    p_event_type  text,
    p_user_id     uuid DEFAULT NULL,
    p_entity_type text DEFAULT NULL,
    p_entity_id   text DEFAULT NULL,
    p_event_data  jsonb DEFAULT '{}',
    p_metadata    jsonb DEFAULT '{}',
    p_source      text DEFAULT 'app',
    p_session_id  uuid DEFAULT NULL,
    p_event_id    uuid DEFAULT NULL,
    p_timestamp   timestamptz DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_schema event_schemas;
    v_reason text;
    v_ts     timestamptz := coalesce(p_timestamp, now());
    v_id     uuid := p_event_id;
BEGIN
    SELECT * INTO v_schema FROM event_schemas WHERE event_type = p_event_type;
    v_reason := event_rejection(v_schema, p_event_type, p_user_id, p_event_data, p_metadata, v_ts,
                                p_entity_type, p_entity_id, p_source);
    IF v_reason IS NOT NULL THEN
        PERFORM raise_event_rejection(v_reason);
    END IF;

    IF v_id IS NULL THEN
        v_id := uuid_generate_v7();
    ELSE
        PERFORM pg_advisory_xact_lock(hashtext('workdev.event_id'), event_id_lock_bucket(v_id));
        IF EXISTS (SELECT 1 FROM platform_event_store
                   WHERE event_id = v_id
                     AND "timestamp" >= v_ts - event_id_dedup_window()
                     AND "timestamp" < v_ts + event_id_dedup_window()) THEN
            RETURN v_id;
        END IF;
    END IF;

    INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, entity_type, entity_id,
                                      event_data, metadata, source, "timestamp", session_id)
    VALUES (v_id, p_event_type, v_schema.event_category, p_user_id, p_entity_type, p_entity_id,
            p_event_data, coalesce(p_metadata, '{}'), coalesce(p_source, 'app'), v_ts, p_session_id)
    ON CONFLICT DO NOTHING;
    RETURN v_id;
END
$$;

-- Validate and move one COPYed batch from event_ingest_staging into the store, all or nothing.
-- Returns how many events were written (re-sent producer ids are skipped, not written twice).
-- work_mem: a batch of 10,000 with supplied ids is sorted by id in memory rather than spilled to disk.
CREATE FUNCTION emit_staged_events(p_batch_id uuid, p_ids_supplied boolean DEFAULT true) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp SET work_mem = '64MB' AS $$
DECLARE
    v_bad      record;
    v_inserted bigint;
BEGIN
    SELECT ord, reason INTO v_bad
    FROM (SELECT s.ord,
                 event_rejection(e, s.event_type, s.user_id, s.event_data, s.metadata,
                                 coalesce(s."timestamp", now()), s.entity_type, s.entity_id, s.source) AS reason
          FROM event_ingest_staging s
          LEFT JOIN event_schemas e ON e.event_type = s.event_type
          WHERE s.batch_id = p_batch_id) checked
    WHERE reason IS NOT NULL
    ORDER BY ord
    LIMIT 1;
    IF FOUND THEN
        PERFORM raise_event_rejection(
            left(v_bad.reason, 6) || format('event #%s of the batch: ', v_bad.ord) || substr(v_bad.reason, 7),
            format('batch_position=%s', v_bad.ord));
    END IF;

    IF NOT p_ids_supplied THEN
        -- Every id was generated by the client (UUIDv7): nothing to de-duplicate, so no sort and no
        -- conflict check (a collision would be a primary-key error, and the whole batch would go).
        INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, entity_type, entity_id,
                                          event_data, metadata, source, "timestamp", session_id)
        SELECT s.event_id, s.event_type, e.event_category, s.user_id, s.entity_type, s.entity_id,
               s.event_data, coalesce(s.metadata, '{}'), coalesce(s.source, 'app'),
               coalesce(s."timestamp", now()), s.session_id
        FROM event_ingest_staging s
        JOIN event_schemas e ON e.event_type = s.event_type
        WHERE s.batch_id = p_batch_id;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        DELETE FROM event_ingest_staging WHERE batch_id = p_batch_id;
        RETURN v_inserted;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('workdev.event_id'), b)
    FROM (SELECT DISTINCT event_id_lock_bucket(event_id) AS b
          FROM event_ingest_staging WHERE batch_id = p_batch_id AND id_supplied ORDER BY 1) buckets;

    INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, entity_type, entity_id,
                                      event_data, metadata, source, "timestamp", session_id)
    SELECT DISTINCT ON (s.event_id)
           s.event_id, s.event_type, e.event_category, s.user_id, s.entity_type, s.entity_id,
           s.event_data, coalesce(s.metadata, '{}'), coalesce(s.source, 'app'),
           coalesce(s."timestamp", now()), s.session_id
    FROM event_ingest_staging s
    JOIN event_schemas e ON e.event_type = s.event_type
    WHERE s.batch_id = p_batch_id
      AND (NOT s.id_supplied OR NOT EXISTS (
            SELECT 1 FROM platform_event_store p
            WHERE p.event_id = s.event_id
              AND p."timestamp" >= coalesce(s."timestamp", now()) - event_id_dedup_window()
              AND p."timestamp" < coalesce(s."timestamp", now()) + event_id_dedup_window()))
    ORDER BY s.event_id, s.ord
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;

    DELETE FROM event_ingest_staging WHERE batch_id = p_batch_id;
    RETURN v_inserted;
END
$$;

-- Create the monthly partitions covering [p_from, p_to] that do not exist yet, moving any rows the
-- DEFAULT partition holds for those months into them. Returns how many partitions were created.
CREATE FUNCTION ensure_event_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_month   timestamptz := date_trunc('month', p_from, 'UTC');
    v_next    timestamptz;
    v_name    text;
    v_created integer := 0;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_to < p_from THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid partition range [%s, %s]', p_from, p_to);
    END IF;
    IF p_to - p_from > interval '10 years' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('partition range [%s, %s] spans more than 10 years', p_from, p_to);
    END IF;
    WHILE v_month <= p_to LOOP
        v_next := ((v_month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        v_name := 'platform_event_store_' || to_char(v_month AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(v_name) IS NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext('workdev.ensure_event_partitions'));
            IF to_regclass(v_name) IS NULL THEN
                EXECUTE format('CREATE TABLE %I (LIKE platform_event_store INCLUDING DEFAULTS)', v_name);
                EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK ("timestamp" >= %L AND "timestamp" < %L)',
                               v_name, v_name || '_bounds', v_month, v_next);
                LOCK TABLE platform_event_store_default IN SHARE ROW EXCLUSIVE MODE;
                EXECUTE format('INSERT INTO %I SELECT * FROM platform_event_store_default '
                               'WHERE "timestamp" >= $1 AND "timestamp" < $2', v_name) USING v_month, v_next;
                DELETE FROM platform_event_store_default WHERE "timestamp" >= v_month AND "timestamp" < v_next;
                EXECUTE format('ALTER TABLE platform_event_store ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                               v_name, v_month, v_next);
                EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_name, v_name || '_bounds');
                v_created := v_created + 1;
            END IF;
        END IF;
        v_month := v_next;
    END LOOP;
    RETURN v_created;
END
$$;
