UPDATE gdpr_erasure_requests SET status = 'running', run_id = %(run_id)s, error = NULL
WHERE request_id = %(request_id)s
