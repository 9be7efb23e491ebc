-- The rows of the periods of one aggregation type that start in [start, end), in a stable order (checks).
SELECT period_start, event_type, event_category, total_events, unique_users, unique_sessions, amount_sum,
       amount_overflow
FROM ${table}
WHERE aggregation_type = @aggregation_type AND period_start >= @start AND period_start < @end
ORDER BY period_start, event_type, event_category
