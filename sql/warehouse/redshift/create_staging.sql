-- The load's staging table: same columns (and on Redshift the same DISTKEY, so the merge join is collocated),
-- private to the session, dropped at the end of the load's transaction.
CREATE TEMP TABLE platform_events_staging (LIKE {table})
