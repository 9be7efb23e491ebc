-- Faults that heal, and a processing status that cannot run ahead of the lake.
--
-- A sweep that keeps failing for a transient reason (the lake's file system, the network, the database restarting)
-- no longer sends its events to the dead letter: they stay pending, the sweep stays claimed, and the next run
-- redoes it. The dead letter keeps only events that are bad themselves (validation, enrichment).
--
-- ingestion_sweeps.retries   failed attempts at a sweep (within its runs and across them): the seed's retry_count
--                            of its events, pending or processed
-- pipeline_watermarks.*      why the consumer's last sweep failed, and how many runs in a row did (the ingest
--                            sensor's backoff; the backlog check's reason); cleared by the next sweep that succeeds
ALTER TABLE ingestion_sweeps ADD COLUMN retries integer NOT NULL DEFAULT 0 CHECK (retries >= 0);
CREATE INDEX ingestion_sweeps_retried_idx ON ingestion_sweeps (tx_low, tx_high) WHERE retries > 0;

ALTER TABLE pipeline_watermarks
    ADD COLUMN failed_runs integer NOT NULL DEFAULT 0 CHECK (failed_runs >= 0),
    ADD COLUMN last_error_kind text,
    ADD COLUMN last_error text,
    ADD COLUMN last_failed_at timestamptz;

-- Healthy events an earlier version dead-lettered after a transient failure go back: resolved, their days queued for
-- a rebuild (the next sweep drains the queue), exactly as a replay would do -- and pending until then.
WITH released AS (
    UPDATE event_failures SET resolved_at = now()
    WHERE error_kind = 'transient' AND resolved_at IS NULL
    RETURNING consumer, event_timestamp
)
INSERT INTO warehouse_rebuild_queue (consumer, event_date, reason)
SELECT DISTINCT consumer, (event_timestamp AT TIME ZONE 'UTC')::date, 'transient failure released' FROM released
ON CONFLICT (consumer, event_date) DO NOTHING;

-- platform_events (the seed's table, derived): an event is
--   failed     in the dead letter (bad itself), with its error_message and retry_count
--   processed  in the lake: below every enabled consumer's watermark (or resolved from the dead letter), and neither
--              its day in warehouse_rebuild_queue nor the event in warehouse_event_refresh (a repair waiting)
--   pending    everything else -- with retry_count = the failed attempts at its sweep so far, and error_message =
--              why the consumer's last sweep failed while that sweep is still to be done
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
        WHEN (f.resolved_at IS NOT NULL OR e.tx_id < w.watermark)
             AND (rq.days IS NULL OR NOT (e."timestamp" AT TIME ZONE 'UTC')::date = ANY (rq.days))
             AND (NOT rq.refreshing OR NOT EXISTS (SELECT 1 FROM warehouse_event_refresh r
                                                   WHERE r.event_id = e.event_id AND r.consumer = ANY (w.consumers)))
            THEN 'processed'
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
        WHEN (e."timestamp" AT TIME ZONE 'UTC')::date = ANY (rq.days) OR (rq.refreshing AND EXISTS (
            SELECT 1 FROM warehouse_event_refresh r WHERE r.event_id = e.event_id AND r.consumer = ANY (w.consumers)))
            THEN NULL
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
-- what waits for a repair, read once: days queued for a rebuild, whether any event waits for a refresh
CROSS JOIN (SELECT (SELECT array_agg(DISTINCT q.event_date) FROM warehouse_rebuild_queue q
                    WHERE q.consumer IN (SELECT consumer FROM pipeline_watermarks WHERE enabled)) AS days,
                   EXISTS (SELECT 1 FROM warehouse_event_refresh r
                           WHERE r.consumer IN (SELECT consumer FROM pipeline_watermarks WHERE enabled)) AS refreshing
           ) rq
CROSS JOIN (SELECT min(tx_low) AS tx_low, max(tx_high) AS tx_high FROM ingestion_sweeps WHERE retries > 0) rs
LEFT JOIN event_failures f ON f.event_id = e.event_id;
