-- Events without a user although their type requires one -- only an erasure makes them -- that still carry
-- personal data (the keys the anonymise statement removes): whatever the ledger says, none may exist.
SELECT e.event_type, count(*)
FROM platform_event_store e
JOIN event_schemas s ON s.event_type = e.event_type AND s.requires_user
WHERE e.user_id IS NULL
  AND (e.metadata ?| array['ip_address', 'user_agent', 'device_fingerprint'] OR e.event_data ?| array['email', 'phone', 'address'])
GROUP BY e.event_type
