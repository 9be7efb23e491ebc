-- Event ids held more than once on one UTC day, most repeated first.
SELECT event_id, COUNT(*) AS copies FROM {table}
WHERE "timestamp" >= %s AND "timestamp" < %s
GROUP BY event_id
HAVING COUNT(*) > 1
ORDER BY copies DESC, event_id
LIMIT %s
