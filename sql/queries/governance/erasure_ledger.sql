SELECT request_id, user_hash, status, value_hashes FROM gdpr_erasure_requests ORDER BY request_id
