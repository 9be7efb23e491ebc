-- Which of the given keyed hashes occur in the store or user_profiles, with how many rows: every event's user id
-- and session id, every string in its payload and metadata, and every UUID or email address inside them (each
-- distinct string hashed once). Slow on purpose: it reads every event (erasure's proof, not a hot path).
WITH k AS (SELECT key FROM governance_keys WHERE name = 'erasure_hash'),
candidates AS (
    SELECT c.value, count(*) AS n
    FROM platform_event_store e
    CROSS JOIN LATERAL (
        SELECT e.user_id::text
        UNION SELECT e.session_id::text
        UNION SELECT v #>> '{}' FROM jsonb_path_query(e.event_data, 'strict $.**') v WHERE jsonb_typeof(v) = 'string'
        UNION SELECT v #>> '{}' FROM jsonb_path_query(e.metadata, 'strict $.**') v WHERE jsonb_typeof(v) = 'string'
        UNION SELECT m[1] FROM regexp_matches(e.event_data::text || ' ' || e.metadata::text,
            '([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9._%%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})',
            'g') m
    ) c(value)
    WHERE c.value IS NOT NULL
    GROUP BY c.value
)
SELECT 'postgres' AS place, h.hash, c.n
FROM candidates c
CROSS JOIN k
CROSS JOIN LATERAL (SELECT encode(sha256(k.key || convert_to(c.value, 'UTF8')), 'hex') AS hash) h
WHERE h.hash = ANY(%(hashes)s::text[])
UNION ALL
SELECT 'user_profiles', h.hash, 1
FROM user_profiles p
CROSS JOIN k
CROSS JOIN LATERAL (SELECT encode(sha256(k.key || convert_to(p.user_id::text, 'UTF8')), 'hex') AS hash) h
WHERE h.hash = ANY(%(hashes)s::text[])
