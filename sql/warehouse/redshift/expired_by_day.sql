-- Retention's plan: per UTC day before the bound (a day boundary) and category, the rows older than their event
-- type's cut-off ({cutoff}: CASE event_type WHEN %s THEN CAST(%s AS TIMESTAMPTZ) ... END, NULL for a type without
-- one, which never expires) and all rows. The sort key's zone maps skip the blocks past the bound.
SELECT CAST("timestamp" AT TIME ZONE 'UTC' AS DATE) AS day, event_category,
       COUNT(CASE WHEN "timestamp" < {cutoff} THEN 1 END) AS expired, COUNT(*) AS total
FROM {table}
WHERE "timestamp" < %s
GROUP BY 1, 2
