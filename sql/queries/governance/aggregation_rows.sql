-- Rows of event_aggregations covering the anonymised events, per aggregation_type: their figures (unique users)
-- change once recomputed from the anonymised events.
SELECT a.aggregation_type, count(*)
FROM event_aggregations a
WHERE a.event_type = ANY(%(event_types)s::text[])
  AND a.period_start <= %(last)s AND a.period_end > %(first)s
  AND EXISTS (SELECT 1 FROM unnest(%(timestamps)s::timestamptz[]) AS t(ts)
              WHERE t.ts >= a.period_start AND t.ts < a.period_end)
GROUP BY a.aggregation_type
