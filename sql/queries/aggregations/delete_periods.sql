-- Every row of the periods of [range_start, range_end) of one aggregation_type (replaced in the same
-- transaction by copy_rows).
DELETE FROM event_aggregations
WHERE aggregation_type = %(aggregation_type)s
  AND period_start >= %(range_start)s
  AND period_start < %(range_end)s
