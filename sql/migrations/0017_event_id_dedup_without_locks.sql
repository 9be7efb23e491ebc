-- Producer-supplied event ids are de-duplicated by a unique index, not serialised on advisory locks.
--
-- Until now every send with a supplied id took one of 128 advisory-lock buckets for the rest of the caller's
-- transaction: a transaction left open after one such event blocked every batch touching its bucket, and two
-- batches taking two buckets in crossed order deadlocked. Now:
--   * each partition of the store has a unique index on (event_id, UTC day of the timestamp), and sends with a
--     supplied id insert ON CONFLICT DO NOTHING: a send waits only for another open transaction that is
--     inserting the SAME id on the same UTC day (PostgreSQL's unique-index wait), then skips it;
--   * a re-send within event_id_dedup_window() (±7 days) of an already committed event is found by probing the
--     store, as before, without a lock;
--   * a batch inserts in event_id order, so two batches sharing ids wait for each other in one order and
--     cannot deadlock.

-- The key producers' ids are unique within: the event's UTC day (a day never spans two monthly partitions,
-- so the per-partition unique index is unique store-wide).
CREATE FUNCTION ensure_event_day_key(p_partition regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
    v_table text := (SELECT relname FROM pg_class WHERE oid = p_partition);
BEGIN
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON %s (event_id, (("timestamp" AT TIME ZONE ''UTC'')::date))',
                   v_table || '_event_day_key', p_partition);
END
$$;

SELECT ensure_event_day_key(inhrelid::regclass)
FROM pg_inherits
WHERE inhparent = 'platform_event_store'::regclass;

-- As in 0004, plus the day key on each partition it creates.
CREATE OR REPLACE FUNCTION ensure_event_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
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

-- Positions in a staged batch that must not be written: a later occurrence of an id the batch already has
-- (the first one wins, whatever the timestamps), and a supplied id already stored within
-- event_id_dedup_window() of its timestamp. One index probe per partition for the whole batch (the ids as an
-- array), not one per event.
CREATE FUNCTION staged_resends(p_batch_id uuid) RETURNS TABLE (ord integer)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    WITH supplied AS MATERIALIZED (
        SELECT s.ord, s.event_id, coalesce(s."timestamp", now()) AS ts
        FROM event_ingest_staging s
        WHERE s.batch_id = p_batch_id AND s.id_supplied
    ), bounds AS (
        SELECT array_agg(event_id) AS ids, min(ts) - event_id_dedup_window() AS low,
               max(ts) + event_id_dedup_window() AS high
        FROM supplied
    ), stored AS MATERIALIZED (
        SELECT p.event_id, p."timestamp"
        FROM bounds b
        JOIN platform_event_store p ON p.event_id = ANY (b.ids) AND p."timestamp" >= b.low AND p."timestamp" < b.high
    )
    SELECT r.ord
    FROM (SELECT s.ord, s.event_id, lag(s.event_id) OVER (ORDER BY s.event_id, s.ord) AS previous FROM supplied s) r
    WHERE r.previous = r.event_id
    UNION
    SELECT s.ord
    FROM supplied s
    JOIN stored p ON p.event_id = s.event_id
                 AND p."timestamp" >= s.ts - event_id_dedup_window()
                 AND p."timestamp" < s.ts + event_id_dedup_window()
$$;

-- Emit one event; returns its event_id. Validates (see event_rejection), derives the category, stamps the
-- timestamp when none is given. A producer may supply p_event_id: re-sending it within
-- event_id_dedup_window() returns the same id and writes nothing.
CREATE OR REPLACE FUNCTION emit_platform_event(
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
    ELSIF EXISTS (SELECT 1 FROM platform_event_store
                  WHERE event_id = v_id
                    AND "timestamp" >= v_ts - event_id_dedup_window()
                    AND "timestamp" < v_ts + event_id_dedup_window()) THEN
        RETURN v_id;
    END IF;

    -- ON CONFLICT: another open transaction inserting this id on the same UTC day is waited for, then skipped.
    INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, entity_type, entity_id,
                                      event_data, metadata, source, "timestamp", session_id)
    VALUES (v_id, p_event_type, v_schema.event_category, p_user_id, p_entity_type, p_entity_id,
            p_event_data, coalesce(p_metadata, '{}'), coalesce(p_source, 'app'), v_ts, p_session_id)
    ON CONFLICT DO NOTHING;
    RETURN v_id;
END
$$;

-- Validate and move one COPYed batch from event_ingest_staging into the store, all or nothing.
-- Returns how many events were written (re-sent producer ids and repeats within the batch are skipped).
-- work_mem: a batch of 10,000 with supplied ids is sorted by id in memory rather than spilled to disk.
CREATE OR REPLACE FUNCTION emit_staged_events(p_batch_id uuid, p_ids_supplied boolean DEFAULT true) RETURNS bigint
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

    -- In event_id order: two batches sharing ids wait for each other in the same order (never a deadlock).
    -- ON CONFLICT: an id another open transaction is inserting on the same UTC day is waited for, then skipped.
    INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, entity_type, entity_id,
                                      event_data, metadata, source, "timestamp", session_id)
    SELECT s.event_id, s.event_type, e.event_category, s.user_id, s.entity_type, s.entity_id,
           s.event_data, coalesce(s.metadata, '{}'), coalesce(s.source, 'app'),
           coalesce(s."timestamp", now()), s.session_id
    FROM event_ingest_staging s
    JOIN event_schemas e ON e.event_type = s.event_type
    WHERE s.batch_id = p_batch_id
      AND NOT EXISTS (SELECT 1 FROM staged_resends(p_batch_id) r WHERE r.ord = s.ord)
    ORDER BY s.event_id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;

    DELETE FROM event_ingest_staging WHERE batch_id = p_batch_id;
    RETURN v_inserted;
END
$$;

DROP FUNCTION event_id_lock_bucket(uuid);
