-- A staged batch with supplied ids is inserted with a plain INSERT in a subtransaction, ON CONFLICT only when
-- that meets a unique violation.
--
-- Since 0017 a supplied batch was inserted ON CONFLICT DO NOTHING: a speculative insertion per row (one more
-- descent of the (event_id, day) key before each insert, and a WAL record to confirm each row), needed only for
-- the rare id another open transaction is inserting on the same UTC day. Now a batch first tries a plain INSERT
-- inside a plpgsql EXCEPTION block (a subtransaction); a unique violation (the other transaction committed that
-- id, after waiting for it exactly as before) rolls that subtransaction back and the batch is inserted again
-- ON CONFLICT DO NOTHING, as in 0019. Either way the same statement, the same rows and the same order.
--
-- A subtransaction that wrote keeps its XID in the backend's subtransaction cache until the transaction ends,
-- and PostgreSQL caches 64 (PGPROC_MAX_CACHED_SUBXIDS): past that every other backend's snapshot overflows and
-- visibility checks go to pg_subtrans, server-wide, for as long as the transaction stays open. So a transaction
-- takes at most emit_plain_insert_limit() plain batches (counted in the transaction-local setting
-- workdev.emit_plain_inserts); the rest go straight to ON CONFLICT, leaving half the cache to the caller's own
-- savepoints.

CREATE FUNCTION emit_plain_insert_limit() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 32 $$;

-- How many staged batches this transaction has inserted in a subtransaction. The setting is the caller's to
-- change: anything emit_staged_events cannot have written (not a whole number from 0 to the limit: negative,
-- too large, not a number) reads as the limit, so a tampered count can only send batches to ON CONFLICT.
-- Unset ('' after a transaction that set it locally, NULL before) is 0.
CREATE FUNCTION emit_plain_inserts_used() RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = public, pg_temp AS $$
    SELECT CASE
        WHEN coalesce(v, '') = '' THEN 0
        WHEN v ~ '^[0-9]{1,9}$' THEN least(v::integer, emit_plain_insert_limit())
        ELSE emit_plain_insert_limit()
    END
    FROM current_setting('workdev.emit_plain_inserts', true) AS v
$$;

-- Validate and move one COPYed batch from event_ingest_staging into the store, all or nothing.
-- Returns how many events were written (re-sent producer ids and repeats within the batch are skipped:
-- of a batch's repeats of one id the first wins, whatever the timestamps).
-- work_mem: a batch of 10,000 with supplied ids is sorted by id in memory rather than spilled to disk.
CREATE OR REPLACE FUNCTION emit_staged_events(p_batch_id uuid, p_ids_supplied boolean DEFAULT true) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp SET work_mem = '64MB' AS $$
DECLARE
    v_bad      record;
    v_inserted bigint;
    v_used     integer;
    -- The first occurrence of each id (one sort by id, which is also the insert order), minus the ids stored
    -- within event_id_dedup_window() of the event's timestamp (the batch's ids probed in one array scan).
    -- In event_id order: two batches sharing ids wait for each other in the same order (never a deadlock).
    v_insert   constant text := $sql$
        WITH batch AS MATERIALIZED (
            SELECT DISTINCT ON (s.event_id) s.event_id, s.event_type, s.user_id, s.entity_type, s.entity_id,
                   s.event_data, s.metadata, s.source, coalesce(s."timestamp", now()) AS ts, s.session_id
            FROM event_ingest_staging s
            WHERE s.batch_id = $1
            ORDER BY s.event_id, s.ord
        ), bounds AS (
            SELECT array_agg(event_id) AS ids, min(ts) - event_id_dedup_window() AS low,
                   max(ts) + event_id_dedup_window() AS high
            FROM batch
        ), stored AS MATERIALIZED (
            SELECT p.event_id, p."timestamp"
            FROM bounds b
            JOIN platform_event_store p ON p.event_id = ANY (b.ids) AND p."timestamp" >= b.low
                                       AND p."timestamp" < b.high
        )
        INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, entity_type, entity_id,
                                          event_data, metadata, source, "timestamp", session_id)
        SELECT s.event_id, s.event_type, e.event_category, s.user_id, s.entity_type, s.entity_id,
               s.event_data, coalesce(s.metadata, '{}'), coalesce(s.source, 'app'), s.ts, s.session_id
        FROM batch s
        JOIN event_schemas e ON e.event_type = s.event_type
        WHERE NOT EXISTS (SELECT 1 FROM stored p
                          WHERE p.event_id = s.event_id
                            AND p."timestamp" >= s.ts - event_id_dedup_window()
                            AND p."timestamp" < s.ts + event_id_dedup_window())
        ORDER BY s.event_id
    $sql$;
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
        -- conflict check (a collision would be a unique-key error, and the whole batch would go).
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

    -- Counted before the subtransaction, so a rolled-back attempt counts too (and the count survives it).
    v_used := emit_plain_inserts_used();
    IF v_used < emit_plain_insert_limit() THEN
        PERFORM set_config('workdev.emit_plain_inserts', (v_used + 1)::text, true);
        BEGIN
            -- An id another open transaction is inserting on the same UTC day is waited for; if that
            -- transaction commits, the unique violation rolls this attempt back.
            EXECUTE v_insert USING p_batch_id;
            GET DIAGNOSTICS v_inserted = ROW_COUNT;
        EXCEPTION WHEN unique_violation THEN
            v_inserted := NULL;
        END;
    END IF;
    IF v_inserted IS NULL THEN
        -- ON CONFLICT: an id another open transaction is inserting on the same UTC day is waited for, then
        -- skipped.
        EXECUTE v_insert || ' ON CONFLICT DO NOTHING' USING p_batch_id;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
    END IF;

    DELETE FROM event_ingest_staging WHERE batch_id = p_batch_id;
    RETURN v_inserted;
END
$$;
