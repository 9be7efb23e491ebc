-- Per category: expired events of one partition, and all its events.
SELECT event_category, expired, total FROM event_partition_expiry(%(partition)s, %(event_types)s, %(cutoffs)s)
