-- Each enabled engine (lake_engines) against the lake: the lake version it delivered (NULL: never), the events the
-- lake holds that it has not delivered yet (of later sweeps, and replayed events of later rebuilds: `pending` in
-- platform_events until it does), and how long ago the lake took the oldest of them.
SELECT n.engine,
       d.lake_version AS delivered_version,
       (SELECT coalesce(sum(s.events), 0) FROM ingestion_sweeps s
        WHERE s.lake_version > coalesce(d.lake_version, -1))::bigint
       + (SELECT count(*) FROM event_failures f
          WHERE f.resolved_at IS NOT NULL AND f.lake_version > coalesce(d.lake_version, -1)) AS events,
       extract(epoch FROM now() - least(
           (SELECT min(s.finished_at) FROM ingestion_sweeps s WHERE s.lake_version > coalesce(d.lake_version, -1)),
           (SELECT min(f.resolved_at) FROM event_failures f
            WHERE f.resolved_at IS NOT NULL AND f.lake_version > coalesce(d.lake_version, -1))))::float8
           AS oldest_seconds
FROM lake_engines n
LEFT JOIN lake_deliveries d ON d.engine = n.engine
WHERE n.enabled
ORDER BY n.engine
