-- Requests not yet done, with their subject and pseudonym, oldest first (all, or the given ones).
SELECT r.request_id, s.user_id::text, r.pseudonym::text, r.postgres_erased_at IS NOT NULL
FROM gdpr_erasure_requests r
JOIN gdpr_erasure_subjects s USING (request_id)
WHERE r.status IN ('requested', 'running', 'failed')
  AND (%(request_ids)s::bigint[] IS NULL OR r.request_id = ANY(%(request_ids)s::bigint[]))
ORDER BY r.request_id
