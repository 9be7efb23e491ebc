-- IP address and user agent of rows without a user whose metadata carries them (the pipeline never loads them;
-- erasure's check looks all the same).
SELECT JSON_VALUE(metadata, '$$.ip_address') AS ip_address, JSON_VALUE(metadata, '$$.user_agent') AS user_agent,
       COUNT(*) AS n
FROM ${table}
WHERE user_id IS NULL AND JSON_VALUE(metadata, '$$.ip_address') IS NOT NULL
GROUP BY ip_address, user_agent
