-- The store keeps what the pipeline splits out of metadata in columns of their own, computed once as each event is
-- written, so that a sweep reads the store's columns as they are.
--
-- pipeline_event_rows computed them on every read: the IP address and user agent out of metadata, metadata without
-- them, the user's role and tenure from user_attributes, ids and JSON as text. Measured on 500,000 demo events
-- (backend CPU of a binary COPY, per 1 M events): the stored columns read at 1.36 CPU-s where computing them cost
-- 1.72, the join with user_attributes another 0.6 and the uuid -> text casts 0.4 (see bench/README.md). Now:
--   ip_address, user_agent  metadata ->> 'ip_address' / 'user_agent'
--   warehouse_metadata      metadata without those two keys: what the lake's metadata holds
-- STORED generated columns: PostgreSQL computes them on every INSERT and on every UPDATE of metadata (an erasure
-- that removes the IP address from metadata clears ip_address with it), so nothing that writes events changes,
-- and nothing can write them out of step with metadata. They are personal data exactly as metadata is, and go
-- wherever metadata goes (retention drops their partitions, erasure rewrites metadata).
--
-- Adding them rewrites every partition (under an ACCESS EXCLUSIVE lock, about as long as a COPY of the store).
ALTER TABLE platform_event_store
    ADD COLUMN ip_address text GENERATED ALWAYS AS (metadata ->> 'ip_address') STORED,
    ADD COLUMN user_agent text GENERATED ALWAYS AS (metadata ->> 'user_agent') STORED,
    ADD COLUMN warehouse_metadata jsonb
        GENERATED ALWAYS AS (metadata - ARRAY['ip_address', 'user_agent']) STORED;

-- The store's columns as the pipeline reads them (ingest/extract.py decodes uuids and joins user_attributes in
-- Arrow). Filters on tx_id, "timestamp" and event_id reach the store's indexes.
CREATE VIEW pipeline_store_rows AS
SELECT e.event_id, e.event_type, e.event_category, e.user_id, e.entity_type, e.entity_id, e.event_data,
       e.warehouse_metadata AS metadata, e.ip_address, e.user_agent, e.source, e."timestamp", e.session_id, e.tx_id
FROM platform_event_store e;
GRANT SELECT ON pipeline_store_rows TO workdev_pipeline;

-- The same rows in SQL as the pipeline's Arrow batches hold them (ids and JSON as text, the user's role and tenure
-- joined), over the stored columns: what earlier code reads, and the reference ingest/extract.py is tested against.
CREATE OR REPLACE VIEW pipeline_event_rows AS
SELECT e.event_id::text AS event_id,
       e.event_type,
       e.event_category,
       e.user_id::text AS user_id,
       u.user_role,
       floor(extract(epoch FROM e."timestamp" - u.signed_up_at) / 86400)::int AS user_tenure_days,
       e.entity_type,
       e.entity_id,
       e.event_data::text AS event_data,
       e.metadata::text AS metadata,
       e.ip_address,
       e.user_agent,
       e.source,
       e."timestamp",
       e.session_id::text AS session_id,
       e.tx_id,
       e.event_id AS event_uuid
FROM pipeline_store_rows e
LEFT JOIN user_attributes u ON u.user_id = e.user_id;

-- As in 0017, but a new month's partition is created with the store's generated columns (ATTACH requires them),
-- and the rows moved from the default partition are copied without them (PostgreSQL computes them again).
CREATE OR REPLACE FUNCTION ensure_event_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_month   timestamptz := date_trunc('month', p_from, 'UTC');
    v_next    timestamptz;
    v_name    text;
    v_columns text;
    v_created integer := 0;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_to < p_from THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid partition range [%s, %s]', p_from, p_to);
    END IF;
    IF p_to - p_from > interval '10 years' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('partition range [%s, %s] spans more than 10 years', p_from, p_to);
    END IF;
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO v_columns
    FROM pg_attribute
    WHERE attrelid = 'platform_event_store'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
    WHILE v_month <= p_to LOOP
        v_next := ((v_month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        v_name := 'platform_event_store_' || to_char(v_month AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(v_name) IS NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext('workdev.ensure_event_partitions'));
            IF to_regclass(v_name) IS NULL THEN
                EXECUTE format('CREATE TABLE %I (LIKE platform_event_store INCLUDING DEFAULTS INCLUDING GENERATED)',
                               v_name);
                EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK ("timestamp" >= %L AND "timestamp" < %L)',
                               v_name, v_name || '_bounds', v_month, v_next);
                LOCK TABLE platform_event_store_default IN SHARE ROW EXCLUSIVE MODE;
                EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM platform_event_store_default '
                               'WHERE "timestamp" >= $1 AND "timestamp" < $2', v_name, v_columns, v_columns)
                    USING v_month, v_next;
                DELETE FROM platform_event_store_default WHERE "timestamp" >= v_month AND "timestamp" < v_next;
                PERFORM ensure_event_day_key(v_name::regclass);
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
