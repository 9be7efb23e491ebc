-- An anonymised event whose payload or metadata still held one of the user's values under another key.
UPDATE platform_event_store SET event_data = %(event_data)s, metadata = %(metadata)s
WHERE event_id = %(event_id)s AND "timestamp" = %(timestamp)s
