-- The UTC days holding at least one row (a delivery from scratch empties the days the lake does not have).
SELECT DISTINCT DATE(`timestamp`) AS day
FROM ${table}
