-- The lake version an engine last delivered and the Delta table id it came from (no row: never delivered).
SELECT lake_version, lake_table_id FROM lake_deliveries WHERE engine = %(engine)s
