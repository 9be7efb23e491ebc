-- Every row held for one user (erasure: the events to refresh from the lake).
SELECT event_id, "timestamp", event_type FROM {table} WHERE user_id = %s
