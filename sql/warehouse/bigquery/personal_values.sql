-- The payload values an erasure removes (email, phone, address) with their rows, where any is present.
-- ($$ is a dollar sign: the statements are templates.)
SELECT JSON_VALUE(event_data, '$$.email') AS email, JSON_VALUE(event_data, '$$.phone') AS phone,
       JSON_VALUE(event_data, '$$.address') AS address, COUNT(*) AS n
FROM ${table}
WHERE JSON_QUERY(event_data, '$$.email') IS NOT NULL OR JSON_QUERY(event_data, '$$.phone') IS NOT NULL
   OR JSON_QUERY(event_data, '$$.address') IS NOT NULL
GROUP BY email, phone, address
