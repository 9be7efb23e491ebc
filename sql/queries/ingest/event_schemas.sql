-- Every registered type's event_data schema (inactive types too: their stored events still validate).
SELECT event_type, json_schema FROM event_schemas
