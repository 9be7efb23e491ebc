-- Which of the given request ids the ledger holds.
SELECT request_id FROM gdpr_erasure_requests WHERE request_id = ANY(%(request_ids)s::bigint[])
