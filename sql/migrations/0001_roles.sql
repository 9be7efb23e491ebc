-- Roles of the event store. Roles are cluster-wide, so they are created once and idempotently
-- (several databases of one cluster may each run these migrations); grants are per database (0005).
--   workdev_app       application code: emits events and reads through the query functions only
--   workdev_pipeline  the Dagster pipeline: reads events, writes its own bookkeeping tables
--   workdev_analyst   read-only analytics on everything but raw personal metadata
-- They are NOLOGIN group roles: a deployment grants them to its login users.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['workdev_app', 'workdev_pipeline', 'workdev_analyst'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by another database's migration
            END;
        END IF;
    END LOOP;
END
$$;
