-- Which of the given keyed hashes of (IP address, user agent) pairs occur on events without a user.
WITH k AS (SELECT key FROM governance_keys WHERE name = 'erasure_hash')
SELECT h.hash, count(*)
FROM platform_event_store e
CROSS JOIN k
CROSS JOIN LATERAL (SELECT encode(sha256(k.key || convert_to((e.metadata ->> 'ip_address') || chr(31)
                                                             || (e.metadata ->> 'user_agent'), 'UTF8')), 'hex') AS hash) h
WHERE e.user_id IS NULL AND e.metadata ? 'ip_address' AND e.metadata ? 'user_agent'
  AND h.hash = ANY(%(hashes)s::text[])
GROUP BY h.hash
