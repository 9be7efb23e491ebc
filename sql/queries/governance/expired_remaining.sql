-- Events still in the store although older than their type's cut-off, per category (the check). The constant
-- bound lets the planner skip the partitions newer than the shortest retention's line.
SELECT e.event_category, count(*)
FROM platform_event_store e
JOIN unnest(%(event_types)s::text[], %(cutoffs)s::timestamptz[]) AS c(event_type, cutoff) ON c.event_type = e.event_type
WHERE e."timestamp" < %(newest_cutoff)s AND e."timestamp" < c.cutoff
GROUP BY e.event_category
