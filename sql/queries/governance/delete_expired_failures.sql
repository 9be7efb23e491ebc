WITH gone AS (
    DELETE FROM event_failures f
    USING unnest(%(event_types)s::text[], %(cutoffs)s::timestamptz[]) AS c(event_type, cutoff)
    WHERE c.event_type = f.event_type AND f.event_timestamp < c.cutoff
    RETURNING 1)
SELECT count(*) FROM gone
