-- Data governance: the retention policy (the seed's daily apply_data_retention_policy) and GDPR erasure.
--
-- Retention: an event is expired when its timestamp is older than its type's event_schemas.retention_days
-- before the run's as_of instant. Whole monthly partitions of platform_event_store whose every event is
-- expired are detached and dropped; otherwise the expired rows are deleted. The functions below do the
-- partition work as the schema owner (SECURITY DEFINER), so the pipeline role needs no ownership.
--
-- Erasure: the seed's anonymise statement on the store, the dead letter scrubbed, the warehouses' copies of the
-- events refreshed, and every request kept in a ledger that holds no personal data: the user id and the values
-- the user's events carried (email, phone, address, IP address, user agent) only as keyed SHA-256 hashes, with a
-- key that analysts cannot read. The ledger never keeps which events were the user's (that would undo the
-- anonymisation); warehouse_event_refresh holds them only until the warehouse has been rewritten.

-- The secret of the ledger's hashes: hash = sha256(key || UTF-8 value), hex. Readable by the pipeline only.
CREATE TABLE governance_keys (
    name       text PRIMARY KEY,
    key        bytea NOT NULL CHECK (octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO governance_keys (name, key)
VALUES ('erasure_hash', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));

-- One row per retention run (dry runs too): what went, or would go, where.
CREATE TABLE retention_runs (
    retention_run_id bigserial PRIMARY KEY,
    run_id           text,
    as_of            timestamptz NOT NULL,
    dry_run          boolean NOT NULL,
    status           text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed')),
    cutoffs          jsonb NOT NULL,                       -- {event_type: cutoff}: older events expire
    postgres_events  jsonb NOT NULL DEFAULT '{}',          -- {category: events}
    warehouse_events jsonb NOT NULL DEFAULT '{}',          -- {consumer: {category: events}}
    partitions_dropped text[] NOT NULL DEFAULT '{}',
    partitions_trimmed jsonb NOT NULL DEFAULT '{}',        -- {partition: rows deleted}
    dead_letter_rows bigint NOT NULL DEFAULT 0,
    bookkeeping_rows jsonb NOT NULL DEFAULT '{}',          -- {table: rows}
    warehouse_days   jsonb NOT NULL DEFAULT '{}',          -- {consumer: {"removed": n, "rewritten": n}}
    error            text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX retention_runs_applied_idx ON retention_runs (finished_at DESC) WHERE status = 'finished' AND NOT dry_run;

-- The GDPR erasure ledger: one row per request (a batch makes one per user).
CREATE TABLE gdpr_erasure_requests (
    request_id       bigserial PRIMARY KEY,
    user_hash        text NOT NULL,                        -- keyed SHA-256 of the user id (never the id)
    requested_by     text NOT NULL,
    run_id           text,
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'erased', 'nothing_found', 'failed')),
    requested_at     timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    store_rows       bigint NOT NULL DEFAULT 0,            -- events anonymised in platform_event_store
    dead_letter_rows bigint NOT NULL DEFAULT 0,            -- of them in event_failures (messages scrubbed)
    profile_rows     bigint NOT NULL DEFAULT 0,            -- user_profiles rows deleted
    warehouse_rows   jsonb NOT NULL DEFAULT '{}',          -- {consumer: rows rewritten}
    value_hashes     jsonb NOT NULL DEFAULT '{}',          -- {kind: [keyed hashes]}, kinds below
    affected_days    date[] NOT NULL DEFAULT '{}',         -- UTC days of the anonymised events
    affected_hours   timestamptz[] NOT NULL DEFAULT '{}',  -- UTC hours of them: what aggregations must redo
    affected_event_types text[] NOT NULL DEFAULT '{}',
    aggregation_rows jsonb NOT NULL DEFAULT '{}',          -- {aggregation_type: event_aggregations rows covering them}
    aggregations_recomputed_at timestamptz,                -- set by the aggregation pipeline once redone
    notes            text[] NOT NULL DEFAULT '{}',
    error            text
);
CREATE INDEX gdpr_erasure_requests_user_idx ON gdpr_erasure_requests (user_hash);
CREATE INDEX gdpr_erasure_requests_pending_aggregations_idx ON gdpr_erasure_requests (requested_at)
    WHERE aggregations_recomputed_at IS NULL AND cardinality(affected_hours) > 0;

-- Events whose warehouse rows must be re-derived from PostgreSQL (dropped, and loaded again as the store holds
-- them now). Filled in the transaction that anonymises them, emptied day by day as each warehouse day is
-- rewritten: a crash in between leaves the work queued, never lost.
CREATE TABLE warehouse_event_refresh (
    consumer        text NOT NULL,
    event_id        uuid NOT NULL,
    event_timestamp timestamptz NOT NULL,
    event_type      text,
    request_id      bigint REFERENCES gdpr_erasure_requests ON DELETE SET NULL,
    reason          text NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX warehouse_event_refresh_day_idx ON warehouse_event_refresh (consumer, event_timestamp);

-- The store's partitions and their bounds (NULL bounds for the DEFAULT partition).
CREATE FUNCTION event_store_partitions()
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz, is_default boolean)
LANGUAGE sql STABLE SET search_path = public, pg_temp SET datestyle = 'ISO, YMD' AS $$
    SELECT c.relname::text,
           (regexp_match(b.expr, 'FROM \(''([^'']+)''\)'))[1]::timestamptz,
           (regexp_match(b.expr, 'TO \(''([^'']+)''\)'))[1]::timestamptz,
           b.expr = 'DEFAULT'
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b
    WHERE i.inhparent = 'platform_event_store'::regclass
    ORDER BY 2 NULLS LAST, 1
$$;

CREATE FUNCTION event_store_partition_exists(p_partition text, p_default_allowed boolean) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM event_store_partitions() p
                   WHERE p.partition_name = p_partition AND (p_default_allowed OR NOT p.is_default)) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('%s is not a partition of platform_event_store', quote_literal(p_partition));
    END IF;
END
$$;

-- Per category, how many events of one partition are expired under the cutoffs (an event is expired when its
-- timestamp is before its type's cutoff; a type without a cutoff never expires), and how many it holds.
CREATE FUNCTION event_partition_expiry(p_partition text, p_event_types text[], p_cutoffs timestamptz[])
RETURNS TABLE (event_category text, expired bigint, total bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM event_store_partition_exists(p_partition, true);
    RETURN QUERY EXECUTE format(
        'SELECT e.event_category, count(*) FILTER (WHERE e."timestamp" < c.cutoff), count(*)
         FROM %I e LEFT JOIN unnest($1::text[], $2::timestamptz[]) AS c(event_type, cutoff)
                   ON c.event_type = e.event_type
         GROUP BY e.event_category', p_partition) USING p_event_types, p_cutoffs;
END
$$;

-- Delete the expired events of one partition; returns how many went, per category.
CREATE FUNCTION delete_expired_events(p_partition text, p_event_types text[], p_cutoffs timestamptz[])
RETURNS TABLE (event_category text, events bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM event_store_partition_exists(p_partition, true);
    RETURN QUERY EXECUTE format(
        'WITH gone AS (
             DELETE FROM %I e USING unnest($1::text[], $2::timestamptz[]) AS c(event_type, cutoff)
             WHERE c.event_type = e.event_type AND e."timestamp" < c.cutoff
             RETURNING e.event_category)
         SELECT g.event_category, count(*) FROM gone g GROUP BY g.event_category', p_partition)
        USING p_event_types, p_cutoffs;
END
$$;

-- Detach and drop one monthly partition when every event in it is expired: returns {category: events} of what
-- went, or NULL when some event in it is not expired (then nothing changed). The check runs after the DETACH,
-- under its lock, so an event inserted meanwhile can never be dropped with the partition. DETACH takes an
-- ACCESS EXCLUSIVE lock on platform_event_store until commit: callers set a short lock_timeout.
CREATE FUNCTION drop_expired_event_partition(p_partition text, p_event_types text[], p_cutoffs timestamptz[])
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_counts jsonb;
    v_live   bigint;
BEGIN
    PERFORM event_store_partition_exists(p_partition, false);
    BEGIN
        EXECUTE format('ALTER TABLE platform_event_store DETACH PARTITION %I', p_partition);
        EXECUTE format(
            'SELECT coalesce(jsonb_object_agg(s.event_category, s.expired), ''{}''), coalesce(sum(s.total - s.expired), 0)
             FROM (SELECT e.event_category, count(*) FILTER (WHERE e."timestamp" < c.cutoff) AS expired,
                          count(*) AS total
                   FROM %I e LEFT JOIN unnest($1::text[], $2::timestamptz[]) AS c(event_type, cutoff)
                             ON c.event_type = e.event_type
                   GROUP BY e.event_category) s', p_partition)
            INTO v_counts, v_live USING p_event_types, p_cutoffs;
        IF v_live > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'WD030', MESSAGE = 'the partition holds events that are not expired';
        END IF;
        EXECUTE format('DROP TABLE %I', p_partition);
        RETURN v_counts;
    EXCEPTION WHEN SQLSTATE 'WD030' THEN
        RETURN NULL;  -- the DETACH is rolled back with the block
    END;
END
$$;

REVOKE EXECUTE ON FUNCTION event_store_partitions(), event_store_partition_exists(text, boolean),
    event_partition_expiry(text, text[], timestamptz[]), delete_expired_events(text, text[], timestamptz[]),
    drop_expired_event_partition(text, text[], timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store_partitions(), event_store_partition_exists(text, boolean),
    event_partition_expiry(text, text[], timestamptz[]), delete_expired_events(text, text[], timestamptz[]),
    drop_expired_event_partition(text, text[], timestamptz[]) TO workdev_pipeline;

GRANT SELECT ON governance_keys TO workdev_pipeline;
GRANT SELECT, INSERT, UPDATE, DELETE ON retention_runs, gdpr_erasure_requests, warehouse_event_refresh
    TO workdev_pipeline;
GRANT USAGE ON SEQUENCE retention_runs_retention_run_id_seq, gdpr_erasure_requests_request_id_seq
    TO workdev_pipeline;
GRANT DELETE ON user_profiles TO workdev_pipeline;  -- an erased user's profile goes with their data
GRANT SELECT ON retention_runs, gdpr_erasure_requests TO workdev_analyst;
