SELECT event_type FROM event_schemas WHERE requires_user
