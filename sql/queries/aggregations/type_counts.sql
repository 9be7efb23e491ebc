-- DuckDB, over event_aggregations (one version of the lake's table): the events of each event type in each period
-- of $aggregation_type starting at one of $periods (the volume check's hours and the same hours of past weeks).
-- A period without events has no row.
SELECT period_start, event_type, sum(total_events)::BIGINT AS events
FROM event_aggregations
WHERE aggregation_type = $aggregation_type
  AND period_start IN (SELECT unnest($periods::TIMESTAMPTZ[]))
GROUP BY period_start, event_type
ORDER BY period_start, event_type
