-- Retention's plan: per UTC day before the bound (a day boundary) and category, the rows whose timestamp is older
-- than their event type's cut-off (the cutoff placeholder: a CASE on event_type over bound parameters, NULL for a type
-- without one, which never expires) and all rows. Only days that may hold an expired row are read.
SELECT DATE(`timestamp`) AS day, event_category,
       COUNTIF(`timestamp` < ${cutoff}) AS expired, COUNT(*) AS total
FROM ${table}
WHERE `timestamp` < @before
GROUP BY day, event_category
