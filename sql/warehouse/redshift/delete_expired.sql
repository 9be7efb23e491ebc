-- Retention in place: the expired rows (older than their event type's cut-off, {cutoff}) of the days in
-- [start, end), the days the plan found expired rows in.
DELETE FROM {table}
WHERE "timestamp" >= %s AND "timestamp" < %s
  AND "timestamp" < {cutoff}
