UPDATE gdpr_erasure_requests
SET store_rows = %(store_rows)s, session_rows = %(session_rows)s, reference_rows = %(reference_rows)s,
    dead_letter_rows = %(dead_letter_rows)s, profile_rows = %(profile_rows)s,
    value_hashes = %(value_hashes)s, affected_days = %(affected_days)s, affected_hours = %(affected_hours)s,
    affected_event_types = %(affected_event_types)s, aggregation_rows = %(aggregation_rows)s, notes = %(notes)s,
    status = %(status)s, postgres_erased_at = now(), finished_at = CASE WHEN %(status)s = 'running' THEN NULL ELSE now() END
WHERE request_id = %(request_id)s
