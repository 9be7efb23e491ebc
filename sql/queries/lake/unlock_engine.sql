SELECT pg_advisory_unlock(hashtext('workdev.lake_delivery'), hashtext(%(engine)s))
