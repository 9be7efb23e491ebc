-- A rebuild committed: replayed events of its days (resolved, not yet in any lake version) are in the lake as of
-- that version, which every enabled engine must deliver before they count as processed.
UPDATE event_failures
SET lake_version = %(lake_version)s
WHERE consumer = %(consumer)s AND resolved_at IS NOT NULL AND lake_version IS NULL
  AND (event_timestamp AT TIME ZONE 'UTC')::date = ANY (%(days)s::date[])
