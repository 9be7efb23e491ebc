-- Every row of one UTC day [day_start, day_end).
DELETE FROM {table} WHERE "timestamp" >= %s AND "timestamp" < %s
