-- The stand-in's form of ip_user_agents.sql (JSONB instead of SUPER).
SELECT metadata ->> 'ip_address', metadata ->> 'user_agent', COUNT(*)
FROM {table}
WHERE user_id IS NULL AND metadata ->> 'ip_address' IS NOT NULL
GROUP BY 1, 2
