-- Per event type of one UTC day: the exact sum of the typed amounts (NUMERIC(38, 9): a sum past 29 integer digits
-- fails rather than rounds) and the events whose amount does not fit (amount_overflow); only types with either.
SELECT event_type, SUM(amount), SUM(CASE WHEN amount_overflow THEN 1 ELSE 0 END)
FROM {table}
WHERE "timestamp" >= %s AND "timestamp" < %s AND (amount IS NOT NULL OR amount_overflow)
GROUP BY event_type
