-- Each engine's last delivery from the lake: the lake version it holds, the rows that delivery loaded, how long ago.
SELECT engine,
       lake_version,
       rows_loaded,
       extract(epoch FROM now() - delivered_at)::float8 AS seconds_ago
FROM lake_deliveries
ORDER BY engine
