SELECT pg_advisory_unlock(hashtext('workdev.governance'))
