-- The columns a table has now (ensure_table adds the missing ones).
SELECT column_name
FROM information_schema.columns
WHERE table_schema = %s AND table_name = %s
