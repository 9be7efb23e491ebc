-- Replace step 1: every row of the periods of one aggregation type that start in [range_start, range_end).
DELETE FROM {table} WHERE aggregation_type = %s AND period_start >= %s AND period_start < %s
