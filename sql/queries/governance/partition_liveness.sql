-- Whether one partition's range of the store holds any event, and any event that has not expired (a type without
-- a cut-off never expires). Both stop at the first such row: a partition holding a single live event is settled
-- by reading its first pages, where counting it (partition_expiry) reads all of it. Only for a bounded partition
-- (the range prunes the scan to it), never the DEFAULT one.
SELECT EXISTS (SELECT 1 FROM platform_event_store e
               WHERE e."timestamp" >= %(range_start)s AND e."timestamp" < %(range_end)s) AS has_events,
       EXISTS (SELECT 1 FROM platform_event_store e
               LEFT JOIN unnest(%(event_types)s::text[], %(cutoffs)s::timestamptz[]) AS c(event_type, cutoff)
                      ON c.event_type = e.event_type
               WHERE e."timestamp" >= %(range_start)s AND e."timestamp" < %(range_end)s
                 AND (c.cutoff IS NULL OR e."timestamp" >= c.cutoff)) AS has_live
