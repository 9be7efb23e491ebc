-- Every event id held for one UTC day.
SELECT DISTINCT event_id FROM {table}
WHERE "timestamp" >= %s AND "timestamp" < %s
