-- Make the periods of one aggregation type that start in [start, end) hold exactly a load's staged rows, as ONE
-- statement (hence atomic), in the shape of replace_day.sql: the source is the staged rows plus, marked _gone,
-- the range's rows that are not staged; staged rows already held are replaced (every column), new ones
-- inserted, the _gone ones deleted. A row is keyed by (aggregation_type, period_start, event_type,
-- event_category); rows of other types and periods are never touched. (No parameter markers in these comments:
-- the emulator moves comments after the statement and would bind them too.)
MERGE ${table} AS target
USING (
  SELECT ${columns}, FALSE AS _gone
  FROM ${staging}
  WHERE aggregation_type = @aggregation_type AND period_start >= @start AND period_start < @end
  UNION ALL
  SELECT ${held_columns}, TRUE AS _gone
  FROM ${table} AS held
  LEFT JOIN ${staging} AS staged
    ON staged.period_start = held.period_start AND staged.event_type = held.event_type
   AND staged.event_category = held.event_category
  WHERE held.aggregation_type = @aggregation_type AND held.period_start >= @start AND held.period_start < @end
    AND staged.event_type IS NULL
) AS source
ON target.aggregation_type = @aggregation_type AND target.period_start >= @start AND target.period_start < @end
   AND target.period_start = source.period_start AND target.event_type = source.event_type
   AND target.event_category = source.event_category
WHEN MATCHED AND source._gone THEN DELETE
WHEN MATCHED THEN UPDATE SET ${update_set}
WHEN NOT MATCHED AND NOT source._gone THEN INSERT (${columns}) VALUES (${insert_values})
