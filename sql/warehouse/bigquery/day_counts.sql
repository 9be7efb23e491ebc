-- Rows held for one UTC day, by event_type.
SELECT event_type, COUNT(*) AS n
FROM ${table}
WHERE `timestamp` >= @start AND `timestamp` < @end
GROUP BY event_type
