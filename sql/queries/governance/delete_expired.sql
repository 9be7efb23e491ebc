SELECT event_category, events FROM delete_expired_events(%(partition)s, %(event_types)s, %(cutoffs)s)
