-- Every event id held for one UTC day.
SELECT DISTINCT event_id
FROM ${table}
WHERE `timestamp` >= @start AND `timestamp` < @end
