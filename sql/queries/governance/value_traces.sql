-- Which of the ledger's hashed values still occur in the store, with how many events: an email, phone or address
-- in any event's payload; an (IP address, user agent) pair on any event without a user (an anonymised event that
-- kept them would show here; events of other users that share a network or a browser are theirs, not traces).
WITH k AS (SELECT key FROM governance_keys WHERE name = 'erasure_hash')
SELECT x.kind, h.hash, count(*)
FROM platform_event_store e
CROSS JOIN k
CROSS JOIN LATERAL (VALUES ('email', e.event_data ->> 'email'),
                           ('phone', e.event_data ->> 'phone'),
                           ('address', e.event_data ->> 'address'),
                           ('ip_user_agent', CASE WHEN e.user_id IS NULL THEN
                               (e.metadata ->> 'ip_address') || chr(31) || (e.metadata ->> 'user_agent') END))
     AS x(kind, value)
CROSS JOIN LATERAL (SELECT encode(sha256(k.key || convert_to(x.value, 'UTF8')), 'hex') AS hash) h
WHERE (e.event_data ?| array['email', 'phone', 'address'] OR (e.user_id IS NULL AND e.metadata ? 'ip_address'))
  AND x.value IS NOT NULL
  AND h.hash = ANY(%(hashes)s::text[])
GROUP BY x.kind, h.hash
