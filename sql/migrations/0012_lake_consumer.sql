-- The lake is the only consumer of the event store (BigQuery and Redshift load from the lake, not from here).
-- A deployment upgraded from the day-directory warehouse carries on from where its consumer 'local' stood: its
-- watermark, sweeps (the ingestion instants a rebuild restores), dead letter, queues and load history become the
-- lake's -- so the first sweep after the upgrade takes only what is new, and an import of the old warehouse
-- (workdev-pipeline lake import) fills the history without a second copy. The engines' own consumers of the old
-- design are retired: their watermarks no longer count in the derived processing status. (On a new database
-- every statement here finds nothing.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pipeline_watermarks WHERE consumer = 'lake') THEN
        UPDATE pipeline_watermarks SET consumer = 'lake' WHERE consumer = 'local';
        UPDATE ingestion_sweeps SET consumer = 'lake' WHERE consumer = 'local';
        UPDATE event_failures SET consumer = 'lake' WHERE consumer = 'local';
        UPDATE warehouse_rebuild_queue SET consumer = 'lake' WHERE consumer = 'local';
        UPDATE warehouse_event_refresh SET consumer = 'lake' WHERE consumer = 'local';
        UPDATE warehouse_sync_status SET warehouse = 'lake' WHERE warehouse = 'local';
    END IF;
    UPDATE pipeline_watermarks SET enabled = false WHERE consumer IN ('bigquery', 'redshift');
END
$$;
