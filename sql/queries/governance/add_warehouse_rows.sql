UPDATE gdpr_erasure_requests
SET warehouse_rows = warehouse_rows || jsonb_build_object(
        %(consumer)s::text, coalesce((warehouse_rows ->> %(consumer)s::text)::bigint, 0) + %(rows)s)
WHERE request_id = %(request_id)s
