-- Types no longer in the catalog stay (their events still exist) but can no longer be emitted.
UPDATE event_schemas
SET active = false, updated_at = now()
WHERE active AND NOT (event_type = ANY (%(event_types)s))
