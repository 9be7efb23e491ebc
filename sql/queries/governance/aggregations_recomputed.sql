-- The requests' aggregation periods are recomputed from their anonymised events.
UPDATE gdpr_erasure_requests SET aggregations_recomputed_at = now() WHERE request_id = ANY(%(request_ids)s::bigint[])
