-- Requests with nothing of theirs left queued for a warehouse are done.
UPDATE gdpr_erasure_requests r
SET status = 'erased', finished_at = coalesce(r.finished_at, now()), error = NULL
WHERE r.request_id = ANY(%(request_ids)s::bigint[]) AND r.status IN ('running', 'failed')
  AND NOT EXISTS (SELECT 1 FROM warehouse_event_refresh q WHERE q.request_id = r.request_id)
RETURNING r.request_id
