-- Which of the ledger's hashed user ids still occur in the store or in user_profiles, with how many rows.
WITH k AS (SELECT key FROM governance_keys WHERE name = 'erasure_hash'),
ids AS (
    SELECT 'postgres' AS store, user_id, count(*) AS n
    FROM platform_event_store WHERE user_id IS NOT NULL GROUP BY user_id
    UNION ALL
    SELECT 'user_profiles', user_id, 1 FROM user_profiles)
SELECT ids.store, h.hash, ids.n
FROM ids
CROSS JOIN k
CROSS JOIN LATERAL (SELECT encode(sha256(k.key || convert_to(ids.user_id::text, 'UTF8')), 'hex') AS hash) h
WHERE h.hash = ANY(%(user_hashes)s::text[])
