-- The engines the lake feeds where this sweep runs (BIGQUERY_ENABLED / REDSHIFT_ENABLED): they gate `processed`
-- in platform_events; every other engine registered before stops gating it (kept, enabled = false).
WITH enabled AS (
    INSERT INTO lake_engines (engine, enabled, updated_at)
    SELECT unnest(%(engines)s::text[]), true, now()
    ON CONFLICT (engine) DO UPDATE SET enabled = true, updated_at = now()
    WHERE NOT lake_engines.enabled
)
UPDATE lake_engines SET enabled = false, updated_at = now()
WHERE enabled AND engine <> ALL (%(engines)s::text[])
