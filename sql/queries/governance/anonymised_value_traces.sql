-- String values anywhere in the payload or metadata of anonymised events (no user although their type requires
-- one: only an erasure makes those) whose keyed hash is one of the given ones: a user id, an email, a phone number
-- or an address that stayed under another key.
WITH k AS (SELECT key FROM governance_keys WHERE name = 'erasure_hash')
SELECT h.hash, count(*)
FROM platform_event_store e
JOIN event_schemas s ON s.event_type = e.event_type AND s.requires_user
CROSS JOIN k
CROSS JOIN LATERAL (SELECT v FROM jsonb_path_query(e.event_data, 'strict $.**') AS v
                    UNION ALL SELECT v FROM jsonb_path_query(e.metadata, 'strict $.**') AS v) leaf
CROSS JOIN LATERAL (SELECT encode(sha256(k.key || convert_to(leaf.v #>> '{}', 'UTF8')), 'hex') AS hash) h
WHERE e.user_id IS NULL AND jsonb_typeof(leaf.v) = 'string' AND h.hash = ANY(%(hashes)s::text[])
GROUP BY h.hash
