UPDATE gdpr_erasure_requests SET status = 'failed', error = %(error)s
WHERE request_id = ANY(%(request_ids)s::bigint[]) AND status = 'running'
