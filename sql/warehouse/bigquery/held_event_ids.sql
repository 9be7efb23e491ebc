-- The rows held of some events (erasure: what a refresh replaces), bounded by their days.
SELECT event_id
FROM ${table}
WHERE `timestamp` >= @start AND `timestamp` < @end AND event_id IN UNNEST(@event_ids)
