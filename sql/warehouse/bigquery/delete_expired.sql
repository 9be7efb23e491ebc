-- Retention in place: the expired rows (older than their event type's cut-off) of the days in
-- [start, end), the days the plan found expired rows in; one statement, so one atomic change of the table.
DELETE FROM ${table}
WHERE `timestamp` >= @start AND `timestamp` < @end
  AND `timestamp` < ${cutoff}
