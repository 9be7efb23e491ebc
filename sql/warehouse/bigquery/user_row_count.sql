-- Rows held for one user over every day (erasure's no-trace check).
SELECT COUNT(*) AS n
FROM ${table}
WHERE user_id = @user_id
