-- Every registered type (inactive ones too: their stored events still expire) with its retention.
SELECT event_type, event_category, retention_days FROM event_schemas ORDER BY event_type
