-- A delivery done: the engine now holds the lake as of lake_version (after the engine's loads, never before).
INSERT INTO lake_deliveries (engine, lake_version, lake_table_id, mode, days_replaced, days_merged, rows_loaded,
                             delivered_at, run_id)
VALUES (%(engine)s, %(lake_version)s, %(lake_table_id)s, %(mode)s, %(days_replaced)s, %(days_merged)s,
        %(rows_loaded)s, now(), %(run_id)s)
ON CONFLICT (engine) DO UPDATE
SET lake_version = excluded.lake_version, lake_table_id = excluded.lake_table_id, mode = excluded.mode,
    days_replaced = excluded.days_replaced, days_merged = excluded.days_merged, rows_loaded = excluded.rows_loaded,
    delivered_at = excluded.delivered_at, run_id = excluded.run_id
