-- Earlier requests that erased this user (by the keyed hash of the id).
SELECT request_id, finished_at FROM gdpr_erasure_requests
WHERE user_hash = %(user_hash)s AND status = 'erased'
ORDER BY request_id
