-- Empty one UTC day (replace_day with no files).
DELETE FROM ${table} WHERE `timestamp` >= @start AND `timestamp` < @end
