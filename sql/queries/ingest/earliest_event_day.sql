-- PostgreSQL: the UTC day of the earliest event in the store (NULL when it is empty): the first day of the
-- partitions `workdev-pipeline dev` shows when WORKDEV_PARTITIONS_START is unset. Reads every monthly partition's
-- timestamps (their BRIN index cannot answer a min): on a large store, set the variable instead.
SELECT (min("timestamp") AT TIME ZONE 'UTC')::date FROM platform_event_store
