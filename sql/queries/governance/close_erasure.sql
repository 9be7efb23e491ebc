-- A closed request forgets its subject (and the events the seed's statement recorded for the user).
WITH subject AS (
    DELETE FROM gdpr_erasure_subjects WHERE request_id = ANY(%(request_ids)s::bigint[]) RETURNING user_id
)
DELETE FROM gdpr_erasure_inbox i USING subject s WHERE i.user_id = s.user_id
