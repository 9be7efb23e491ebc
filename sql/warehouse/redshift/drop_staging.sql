DROP TABLE IF EXISTS platform_events_staging
