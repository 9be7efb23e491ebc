-- Fill days the table holds no row of (a delivery from scratch knows which, under the engine's lock): the load's
-- staged rows (the files of those days), one per event_id, inserted by ONE statement over the days' span -- only
-- staged rows are inserted, so the rows of held days in between are untouched. The result replace_day.sql would
-- give on each day, without reading the table (on the emulator a MERGE costs time proportional to the table).
INSERT INTO ${table} (${columns})
SELECT ${columns} FROM (
  SELECT ${source_columns}
  FROM ${staging}
  WHERE `timestamp` >= @start AND `timestamp` < @end
  QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at DESC) = 1
)
