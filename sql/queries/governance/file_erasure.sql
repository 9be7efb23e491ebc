-- A filed request: its ledger row (the user only as a keyed hash) and its subject (the raw id, while open).
WITH request AS (
    INSERT INTO gdpr_erasure_requests (user_hash, requested_by, status, pseudonym)
    VALUES (%(user_hash)s, %(requested_by)s, 'requested', gen_random_uuid())
    RETURNING request_id
), subject AS (
    INSERT INTO gdpr_erasure_subjects (request_id, user_id) SELECT request_id, %(user_id)s FROM request
)
SELECT request_id FROM request
