-- Event ids held more than once on one UTC day, most repeated first.
SELECT event_id, COUNT(*) AS n
FROM ${table}
WHERE `timestamp` >= @start AND `timestamp` < @end
GROUP BY event_id
HAVING COUNT(*) > 1
ORDER BY n DESC, event_id
LIMIT @limit
