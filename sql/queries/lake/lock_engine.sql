-- Everything that writes one engine's platform_events (deliveries, day replaces, retention and erasure in the
-- engine) takes turns: a session-level advisory lock per engine, released by PostgreSQL if the process dies.
SELECT pg_advisory_lock(hashtext('workdev.lake_delivery'), hashtext(%(engine)s))
