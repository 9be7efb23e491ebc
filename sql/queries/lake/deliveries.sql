-- Every engine's delivered lake version (the sensors, and what the lake's maintenance may clean up behind).
SELECT engine, lake_version, lake_table_id, delivered_at FROM lake_deliveries ORDER BY engine
