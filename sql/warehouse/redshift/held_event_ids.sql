-- The rows held of some events ({event_ids}: a list of bound parameters), bounded by their days.
SELECT event_id FROM {table}
WHERE "timestamp" >= %s AND "timestamp" < %s AND event_id IN ({event_ids})
