-- amount_sum is the exact sum (numeric, unbounded); amount_overflow: it does not fit the lake's and the engines'
-- DECIMAL(38, 9), where the row's amount_sum is NULL (workdev_pipeline/aggregations/amounts.py).
COPY event_aggregations (aggregation_type, period_start, period_end, event_type, event_category, total_events,
                         unique_users, unique_sessions, amount_sum, computed_at, amount_overflow) FROM STDIN
