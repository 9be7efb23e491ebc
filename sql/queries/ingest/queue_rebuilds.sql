-- Days a rebuild is about to write, queued first: each is dequeued once written (dequeue_rebuild), so a run
-- killed in between leaves them for the next sweep, rebuild or replay of the consumer to finish.
INSERT INTO warehouse_rebuild_queue (consumer, event_date, reason)
SELECT %(consumer)s, d, %(reason)s FROM unnest(%(days)s::date[]) AS d
ON CONFLICT (consumer, event_date) DO NOTHING
