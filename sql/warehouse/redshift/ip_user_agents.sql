-- IP address and user agent of rows without a user whose metadata carries them (the pipeline never loads them;
-- erasure's check looks all the same). Unproven on Redshift (the stand-in runs postgres_standin/ip_user_agents.sql).
SELECT CAST(metadata.ip_address AS VARCHAR), CAST(metadata.user_agent AS VARCHAR), COUNT(*)
FROM {table}
WHERE user_id IS NULL AND metadata.ip_address IS NOT NULL
GROUP BY 1, 2
