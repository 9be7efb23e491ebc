-- Upsert one catalog entry into event_schemas; returns (inserted) when something changed, no row otherwise.
INSERT INTO event_schemas AS s (
    event_type, event_category, retention_days, json_schema, required_keys, requires_user, entity_type,
    amount_field, max_payload_bytes, description, version, active)
VALUES (
    %(event_type)s, %(event_category)s, %(retention_days)s, %(json_schema)s, %(required_keys)s, %(requires_user)s,
    %(entity_type)s, %(amount_field)s, %(max_payload_bytes)s, %(description)s, %(version)s, %(active)s)
ON CONFLICT (event_type) DO UPDATE SET
    event_category = excluded.event_category,
    retention_days = excluded.retention_days,
    json_schema = excluded.json_schema,
    required_keys = excluded.required_keys,
    requires_user = excluded.requires_user,
    entity_type = excluded.entity_type,
    amount_field = excluded.amount_field,
    max_payload_bytes = excluded.max_payload_bytes,
    description = excluded.description,
    version = excluded.version,
    active = excluded.active,
    updated_at = now()
WHERE s.version IS DISTINCT FROM excluded.version OR s.description IS DISTINCT FROM excluded.description
RETURNING (xmax = 0) AS inserted
