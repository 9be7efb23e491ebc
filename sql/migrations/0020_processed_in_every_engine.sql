-- processed = in the lake AND in every enabled warehouse engine (BigQuery, Redshift).
--
-- The engines load from the lake's commits (lake_deliveries: the lake version each one last delivered), so an event
-- is in an engine once that engine has delivered the lake version that first held it:
--   lake_engines                 the engines the lake feeds, as registered by each sweep (the engines enabled where
--                                it ran: BIGQUERY_ENABLED / REDSHIFT_ENABLED); an engine no longer enabled is kept
--                                with enabled = false and stops gating `processed` (re-enabled, it gates again from
--                                the version it last delivered)
--   ingestion_sweeps.lake_version   the lake version that holds the sweep's events (its append; for a sweep redone
--                                after a kill, the lake's version when the redo found the commit: never earlier)
--   event_failures.lake_version  for a replayed event (resolved), the version of the rebuild that wrote its day
--                                with it; NULL while that rebuild waits (its day is queued: pending anyway)
-- Sweeps and replayed events from before this migration have no version: they do not wait for any engine.
CREATE TABLE lake_engines (
    engine      text PRIMARY KEY CHECK (engine IN ('bigquery', 'redshift')),
    enabled     boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON lake_engines TO workdev_pipeline;
GRANT SELECT ON lake_engines TO workdev_analyst;

ALTER TABLE ingestion_sweeps ADD COLUMN lake_version bigint CHECK (lake_version >= 0);
-- the first sweep an engine has not delivered: the smallest lake_version above the engine's delivered version
CREATE INDEX ingestion_sweeps_lake_version_idx ON ingestion_sweeps (lake_version) WHERE lake_version IS NOT NULL;

ALTER TABLE event_failures ADD COLUMN lake_version bigint CHECK (lake_version >= 0);

-- platform_events (the seed's table, derived): an event is
--   failed     in the dead letter (bad itself), with its error_message and retry_count
--   processed  in the lake -- below every enabled consumer's watermark (or resolved from the dead letter), neither
--              its day in warehouse_rebuild_queue nor the event in warehouse_event_refresh (of the lake or of an
--              enabled engine) -- AND in every enabled engine: each has delivered the lake version that holds it
--   pending    everything else -- with retry_count = the failed attempts at its sweep so far, and error_message =
--              why the consumer's last sweep failed while that sweep is still to be done
-- processed_at is when the lake took the event (the engines' delivery times are in lake_deliveries); NULL unless
-- processed.
--
-- Sweeps take consecutive transaction-id ranges and commit to the lake in that order, so the events every enabled
-- engine holds are exactly those below the tx_low of the first sweep whose lake_version is above the smallest
-- delivered version (ev.tx, read once per query through ingestion_sweeps_lake_version_idx): one comparison per row.
CREATE OR REPLACE VIEW platform_events AS
SELECT
    e.event_id,
    e.event_type,
    e.event_category,
    e.user_id,
    e.entity_type,
    e.entity_id,
    e.event_data,
    e.metadata,
    e.source,
    e."timestamp",
    e.session_id,
    CASE
        WHEN f.event_id IS NOT NULL AND f.resolved_at IS NULL THEN 'failed'
        WHEN x.in_lake AND x.in_engines AND NOT x.repairing THEN 'processed'
        ELSE 'pending'
    END AS processing_status,
    CASE
        WHEN f.event_id IS NOT NULL THEN f.retry_count
        WHEN e.tx_id >= rs.tx_low AND e.tx_id < rs.tx_high  -- only events in the span of retried sweeps look one up
            THEN coalesce((SELECT max(s.retries) FROM ingestion_sweeps s
                           WHERE s.retries > 0 AND s.tx_low <= e.tx_id AND s.tx_high > e.tx_id), 0)
        ELSE 0
    END AS retry_count,
    CASE
        WHEN f.event_id IS NOT NULL THEN CASE WHEN f.resolved_at IS NULL THEN f.error_message END
        WHEN e.tx_id >= w.watermark THEN (SELECT p.last_error FROM pipeline_watermarks p
                                          JOIN ingestion_sweeps s ON s.consumer = p.consumer AND s.status = 'running'
                                          WHERE p.enabled AND p.last_error IS NOT NULL
                                            AND s.tx_low <= e.tx_id AND s.tx_high > e.tx_id
                                          LIMIT 1)
    END AS error_message,
    e.created_at,
    CASE
        WHEN x.repairing OR NOT x.in_engines THEN NULL
        WHEN f.resolved_at IS NOT NULL THEN f.resolved_at
        WHEN f.event_id IS NULL AND e.tx_id < w.watermark THEN (
            SELECT s.finished_at
            FROM ingestion_sweeps s
            WHERE s.tx_high > e.tx_id AND s.tx_low <= e.tx_id
            ORDER BY s.tx_high
            LIMIT 1)
    END AS processed_at,
    e.tx_id
FROM platform_event_store e
CROSS JOIN (SELECT min(tx_watermark) AS watermark, array_agg(consumer) AS consumers
            FROM pipeline_watermarks WHERE enabled) w
-- the enabled engines: the smallest version they all delivered (-1: one never delivered; NULL: no engine enabled)
-- and the first transaction id of what they do not all hold yet (no sweep beyond it: bigint's maximum)
CROSS JOIN (SELECT g.version, g.engines,
                   coalesce((SELECT s.tx_low FROM ingestion_sweeps s
                             WHERE s.lake_version IS NOT NULL AND s.lake_version > g.version
                             ORDER BY s.lake_version LIMIT 1), 9223372036854775807) AS tx
            FROM (SELECT min(coalesce(d.lake_version, -1)) AS version, array_agg(n.engine) AS engines
                  FROM lake_engines n LEFT JOIN lake_deliveries d ON d.engine = n.engine
                  WHERE n.enabled) g
            OFFSET 0) ev  -- read once: never pulled up into a subquery per row
-- what waits for a repair, read once: days queued for a rebuild, whether any event waits for a refresh
CROSS JOIN (SELECT (SELECT array_agg(DISTINCT q.event_date) FROM warehouse_rebuild_queue q
                    WHERE q.consumer IN (SELECT consumer FROM pipeline_watermarks WHERE enabled)) AS days,
                   EXISTS (SELECT 1 FROM warehouse_event_refresh r
                           WHERE r.consumer IN (SELECT consumer FROM pipeline_watermarks WHERE enabled)
                              OR r.consumer IN (SELECT engine FROM lake_engines WHERE enabled)) AS refreshing
           ) rq
CROSS JOIN (SELECT min(tx_low) AS tx_low, max(tx_high) AS tx_high FROM ingestion_sweeps WHERE retries > 0) rs
LEFT JOIN event_failures f ON f.event_id = e.event_id
CROSS JOIN LATERAL (SELECT
    f.resolved_at IS NOT NULL OR e.tx_id < w.watermark AS in_lake,
    CASE WHEN f.event_id IS NOT NULL THEN coalesce(f.lake_version <= ev.version, true)
         ELSE e.tx_id < ev.tx END AS in_engines,
    (rq.days IS NOT NULL AND (e."timestamp" AT TIME ZONE 'UTC')::date = ANY (rq.days))  -- no day: no date computed
        OR (rq.refreshing AND EXISTS (SELECT 1 FROM warehouse_event_refresh r
                                      WHERE r.event_id = e.event_id
                                        AND (r.consumer = ANY (w.consumers) OR r.consumer = ANY (ev.engines))))
        AS repairing) x;
