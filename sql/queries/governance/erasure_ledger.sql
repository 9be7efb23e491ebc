-- The requests the check can verify: those whose keyed hashes have not expired (the ledger's retention, 0016).
SELECT request_id, user_hash, status, value_hashes FROM gdpr_erasure_requests WHERE user_hash IS NOT NULL
ORDER BY request_id
