INSERT INTO gdpr_erasure_requests (user_hash, requested_by, run_id)
VALUES (%(user_hash)s, %(requested_by)s, %(run_id)s)
RETURNING request_id
