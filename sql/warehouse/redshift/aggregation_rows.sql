-- The rows of the periods of one aggregation type that start in [range_start, range_end), in a stable order.
SELECT period_start, event_type, event_category, total_events, unique_users, unique_sessions, amount_sum,
       amount_overflow
FROM {table}
WHERE aggregation_type = %s AND period_start >= %s AND period_start < %s
ORDER BY period_start, event_type, event_category
