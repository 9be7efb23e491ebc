-- Erased requests whose aggregation periods have not been recomputed yet (this run's and any earlier one's), with
-- the UTC hours of the events they anonymised.
SELECT r.request_id, r.affected_hours
FROM gdpr_erasure_requests r
WHERE r.aggregations_recomputed_at IS NULL AND cardinality(r.affected_hours) > 0 AND r.status = 'erased'
ORDER BY r.request_id
