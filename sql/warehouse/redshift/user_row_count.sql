-- Rows held for one user over every day (erasure's no-trace check).
SELECT COUNT(*) FROM {table} WHERE user_id = %s
