-- The seed's GDPR statement on the store (UPDATE platform_events SET user_id = NULL, event_data = event_data -
-- 'email' - 'phone' - 'address', metadata = metadata - 'ip_address' - 'user_agent' WHERE user_id = ...), straight on
-- the store rather than row by row through the view's trigger. Returns every event it anonymised with the values
-- it carried before (both parts read the same snapshot) and its new payload and metadata: the caller keeps only
-- the values' keyed hashes, scrubs them from wherever else they sit in those payloads, queues the events for the
-- warehouses' refresh and learns the days and hours to re-aggregate.
WITH old AS (
    SELECT e.event_id, e."timestamp", e.event_type,
           e.event_data ->> 'email' AS email, e.event_data ->> 'phone' AS phone, e.event_data ->> 'address' AS address,
           e.metadata ->> 'ip_address' AS ip_address, e.metadata ->> 'user_agent' AS user_agent,
           e.event_data - 'email' - 'phone' - 'address' AS event_data,
           e.metadata - 'ip_address' - 'user_agent' AS metadata
    FROM platform_event_store e
    WHERE e.user_id = %(user_id)s
), anonymised AS (
    UPDATE platform_event_store e
    SET user_id = NULL,
        event_data = e.event_data - 'email' - 'phone' - 'address',
        metadata = e.metadata - 'ip_address' - 'user_agent'
    WHERE e.user_id = %(user_id)s
    RETURNING 1
)
SELECT old.*, (SELECT count(*) FROM anonymised) AS anonymised FROM old
