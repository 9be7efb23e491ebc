-- What a consumer still owes the lake, and why:
--   pending                 events not swept yet, and how old the oldest is
--   failed                  the dead letter (events bad themselves)
--   repair_days             days queued for a rebuild (a replay's, a failed one's), and their events below the
--   repair_events           watermark plus the events waiting for a refresh (erasure): pending too
--   failed_runs, last_error_kind, last_error, seconds_since_failure
--                           the consumer's last sweep failed for a transient reason (runs in a row, why, when)
WITH c AS (
    SELECT coalesce(max(tx_watermark), 0) AS tx, coalesce(max(failed_runs), 0) AS failed_runs,
           max(last_error_kind) AS last_error_kind, max(last_error) AS last_error,
           extract(epoch FROM now() - max(last_failed_at))::float8 AS seconds_since_failure
    FROM pipeline_watermarks WHERE consumer = %(consumer)s),
     q AS (SELECT event_date FROM warehouse_rebuild_queue WHERE consumer = %(consumer)s)
SELECT (SELECT count(*) FROM platform_event_store e WHERE e.tx_id >= c.tx) AS pending,
       (SELECT extract(epoch FROM now() - min(e.created_at))::float8
        FROM platform_event_store e WHERE e.tx_id >= c.tx) AS oldest_pending_seconds,
       (SELECT count(*) FROM event_failures f WHERE f.resolved_at IS NULL AND f.consumer = %(consumer)s) AS failed,
       (SELECT count(*) FROM q) AS repair_days,
       (SELECT count(*) FROM q JOIN platform_event_store e
               ON e."timestamp" >= q.event_date::timestamp AT TIME ZONE 'UTC'
              AND e."timestamp" < (q.event_date + 1)::timestamp AT TIME ZONE 'UTC'
        WHERE e.tx_id < c.tx)
       + (SELECT count(*) FROM warehouse_event_refresh r WHERE r.consumer = %(consumer)s
          AND (r.event_timestamp AT TIME ZONE 'UTC')::date NOT IN (SELECT event_date FROM q)) AS repair_events,
       c.failed_runs, c.last_error_kind, c.last_error, c.seconds_since_failure
FROM c
