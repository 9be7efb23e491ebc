-- For the current transaction only: a DETACH waits at most this long for platform_event_store's lock (meanwhile
-- every new query of the table queues behind it).
SELECT set_config('lock_timeout', %(lock_timeout)s, true)
