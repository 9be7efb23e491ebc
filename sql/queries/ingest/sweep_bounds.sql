-- The next range to sweep: from the consumer's watermark up to the oldest transaction of THIS database still
-- in progress (every id below it has committed or aborted, so no event there can appear later), and whether
-- any event lies in it.
--
-- Transaction ids are cluster-wide, so the snapshot's xmin would let a long transaction in another database
-- (a report, a bulk load) hold this pipeline back. In-progress ids that pg_stat_activity shows belonging to
-- another database are left out; any id it cannot attribute (a session that just ended, a role whose
-- backend_xid is hidden without pg_read_all_stats) counts as ours, which is only ever more cautious; the
-- statement says when such an id set the bound (`unattributed`), and the sweep asks again with a new snapshot:
-- a short transaction of another database that ended between this snapshot and the read of pg_stat_activity is
-- gone from the next snapshot, so a busy neighbour does not make a sweep come back idle.
WITH w AS (SELECT tx_watermark FROM pipeline_watermarks WHERE consumer = %(consumer)s),
     snap AS (SELECT pg_current_snapshot() AS s),
     xip AS (
        SELECT x::text::bigint AS xid,
               EXISTS (SELECT 1 FROM pg_stat_activity a
                       WHERE a.backend_xid::text = (x::text::bigint %% 4294967296)::text
                         AND a.datname = current_database()) AS ours
        FROM snap, pg_snapshot_xip(snap.s) AS x
        WHERE NOT EXISTS (
            SELECT 1 FROM pg_stat_activity a
            WHERE a.backend_xid::text = (x::text::bigint %% 4294967296)::text
              AND a.datname IS NOT NULL AND a.datname <> current_database())),
     lowest AS (SELECT xid, ours FROM xip ORDER BY xid LIMIT 1),
     bound AS (
        SELECT coalesce((SELECT xid FROM lowest), pg_snapshot_xmax(snap.s)::text::bigint) AS tx_high,
               coalesce((SELECT NOT ours FROM lowest), false) AS unattributed
        FROM snap)
SELECT w.tx_watermark AS tx_low,
       bound.tx_high,
       EXISTS (SELECT 1 FROM platform_event_store e
               WHERE e.tx_id >= w.tx_watermark AND e.tx_id < bound.tx_high) AS has_events,
       bound.unattributed
FROM w, bound
