COPY event_aggregations (aggregation_type, period_start, period_end, event_type, event_category, total_events,
                         unique_users, unique_sessions, amount_sum, computed_at) FROM STDIN
