INSERT INTO warehouse_sync_status (warehouse, partition_key, batch_id, run_id, status, events_total, events_loaded,
                                   events_failed, bytes_written, duration_seconds, error_message, started_at,
                                   finished_at)
VALUES (%(warehouse)s, %(partition_key)s, %(batch_id)s, %(run_id)s, %(status)s, %(events_total)s, %(events_loaded)s,
        %(events_failed)s, %(bytes_written)s, %(duration_seconds)s, %(error_message)s, %(started_at)s, now())
