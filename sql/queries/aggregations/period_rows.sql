-- The rows of the periods of one aggregation type that start in [range_start, range_end), in the order the
-- engines' aggregation_rows statements return them (a remote engine's aggregations checked against these).
SELECT period_start, event_type, event_category, total_events, unique_users, unique_sessions, amount_sum,
       amount_overflow
FROM event_aggregations
WHERE aggregation_type = %(aggregation_type)s AND period_start >= %(range_start)s AND period_start < %(range_end)s
ORDER BY period_start, event_type, event_category
