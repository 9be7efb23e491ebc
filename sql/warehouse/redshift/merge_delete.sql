-- Merge, step 1 (the delete+insert merge of Redshift / dlt): the day's rows that staging replaces.
DELETE FROM {table}
USING platform_events_staging AS staging
WHERE {table}.event_id = staging.event_id
  AND {table}."timestamp" >= %s AND {table}."timestamp" < %s
