-- Erasure refresh of events the lake no longer holds: their rows go, bounded by their days.
DELETE FROM ${table}
WHERE `timestamp` >= @start AND `timestamp` < @end AND event_id IN UNNEST(@event_ids)
