-- {category: events} of the dropped partition, or NULL when it holds an event that has not expired.
SELECT drop_expired_event_partition(%(partition)s, %(event_types)s, %(cutoffs)s)
