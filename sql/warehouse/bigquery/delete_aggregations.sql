-- Every row of the periods of one aggregation type that start in [start, end) (a range without events).
DELETE FROM ${table}
WHERE aggregation_type = @aggregation_type AND period_start >= @start AND period_start < @end
