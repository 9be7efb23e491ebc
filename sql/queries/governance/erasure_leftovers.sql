-- Raw user ids the ledger's machinery still holds: subjects of closed requests, and users recorded by the seed's
-- statement (gdpr_erasure_inbox) -- once their request is closed, none may remain.
SELECT 'erasure_subjects', s.user_id::text
FROM gdpr_erasure_subjects s JOIN gdpr_erasure_requests r USING (request_id)
WHERE r.status IN ('erased', 'nothing_found')
UNION ALL
SELECT 'erasure_inbox', user_id::text FROM gdpr_erasure_inbox
