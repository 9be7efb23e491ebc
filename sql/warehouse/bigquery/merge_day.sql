-- Upsert a load's staged rows into one day by event_id: one row per event_id from staging (the latest
-- ingested_at), every column replaced when the event is already held, inserted otherwise. Both sides are
-- restricted to the day's timestamp range, so it reads and rewrites one partition. JSON columns arrive as
-- STRING in staging and are parsed here (${source_columns}).
MERGE ${table} AS target
USING (
  SELECT ${source_columns}
  FROM ${staging}
  WHERE `timestamp` >= @start AND `timestamp` < @end
  QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at DESC) = 1
) AS source
ON target.event_id = source.event_id AND target.`timestamp` >= @start AND target.`timestamp` < @end
WHEN MATCHED THEN UPDATE SET ${update_set}
WHEN NOT MATCHED THEN INSERT (${columns}) VALUES (${insert_values})
