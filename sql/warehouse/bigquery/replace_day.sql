-- Make one day hold exactly a load's staged rows (one per event_id), as ONE statement, hence atomic: the
-- MERGE matches nothing (ON FALSE), so every row of the day in the table is "not matched by source" and
-- deleted, and every staged row is "not matched" and inserted. Rows of other days are never touched.
MERGE ${table} AS target
USING (
  SELECT ${source_columns}
  FROM ${staging}
  WHERE `timestamp` >= @start AND `timestamp` < @end
  QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at DESC) = 1
) AS source
ON FALSE
WHEN NOT MATCHED BY SOURCE AND target.`timestamp` >= @start AND target.`timestamp` < @end THEN DELETE
WHEN NOT MATCHED THEN INSERT (${columns}) VALUES (${insert_values})
