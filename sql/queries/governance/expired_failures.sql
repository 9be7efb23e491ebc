-- Dead-letter rows of expired events (their events go with the partition or the DELETE).
SELECT count(*)
FROM event_failures f
JOIN unnest(%(event_types)s::text[], %(cutoffs)s::timestamptz[]) AS c(event_type, cutoff) ON c.event_type = f.event_type
WHERE f.event_timestamp < c.cutoff
