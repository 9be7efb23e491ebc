-- Per event type of one UTC day: the exact sum of the typed amounts (NUMERIC: a sum past its 29 integer digits
-- fails rather than rounds; not BIGNUMERIC, which the emulator rounds to 5 decimals) and the events whose amount does
-- not fit NUMERIC (amount_overflow); only types with either.
SELECT event_type, SUM(amount) AS amount_sum, COUNTIF(amount_overflow) AS overflowed
FROM ${table}
WHERE `timestamp` >= @start AND `timestamp` < @end AND (amount IS NOT NULL OR amount_overflow)
GROUP BY event_type
