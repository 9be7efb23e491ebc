-- Erasure refresh, step 1: the rows of some events ({event_ids}: bound parameters), bounded by their days; step 2
-- inserts the lake's current rows of them from staging (insert_from_staging.sql), in the same transaction.
DELETE FROM {table}
WHERE "timestamp" >= %s AND "timestamp" < %s AND event_id IN ({event_ids})
