-- Make one day hold exactly a load's staged rows (one per event_id), as ONE statement, hence atomic: staged rows
-- already held are replaced (every column), new ones inserted, and the day's rows that are not staged deleted
-- ("not matched by source"). Rows of other days are never touched. The join is on event_id (not ON FALSE,
-- which means the same but makes the emulator's engine join every staged row with every row of the table).
MERGE ${table} AS target
USING (
  SELECT ${source_columns}
  FROM ${staging}
  WHERE `timestamp` >= @start AND `timestamp` < @end
  QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at DESC) = 1
) AS source
ON target.event_id = source.event_id AND target.`timestamp` >= @start AND target.`timestamp` < @end
WHEN MATCHED THEN UPDATE SET ${update_set}
WHEN NOT MATCHED BY SOURCE AND target.`timestamp` >= @start AND target.`timestamp` < @end THEN DELETE
WHEN NOT MATCHED THEN INSERT (${columns}) VALUES (${insert_values})
