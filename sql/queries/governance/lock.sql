-- Retention runs and erasure requests take turns (session lock: released if the process dies).
SELECT pg_advisory_lock(hashtext('workdev.governance'))
