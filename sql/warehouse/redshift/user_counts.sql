-- Rows per user (erasure's check hashes each user id and looks for the erased ones).
SELECT user_id, COUNT(*) FROM {table} WHERE user_id IS NOT NULL GROUP BY user_id
