-- The payload values an erasure removes (email, phone, address) with their rows, where any is present: SUPER
-- navigation, a string attribute cast to VARCHAR (its value, unquoted). Unproven on Redshift (the stand-in runs
-- postgres_standin/personal_values.sql).
SELECT CAST(event_data.email AS VARCHAR) AS email, CAST(event_data.phone AS VARCHAR) AS phone,
       CAST(event_data.address AS VARCHAR) AS address, COUNT(*)
FROM {table}
WHERE event_data.email IS NOT NULL OR event_data.phone IS NOT NULL OR event_data.address IS NOT NULL
GROUP BY 1, 2, 3
