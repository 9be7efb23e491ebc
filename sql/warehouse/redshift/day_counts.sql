-- Rows held for one UTC day, by event_type.
SELECT event_type, COUNT(*) FROM {table}
WHERE "timestamp" >= %s AND "timestamp" < %s
GROUP BY event_type
