-- The UTC days holding at least one row (a delivery from scratch empties the days the lake does not have).
SELECT DISTINCT CAST("timestamp" AT TIME ZONE 'UTC' AS DATE) AS day FROM {table}
