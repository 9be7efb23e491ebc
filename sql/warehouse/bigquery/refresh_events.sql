-- Erasure refresh: make the rows of some events (the ids given, within their days [start, end)) exactly the
-- lake's current rows of them (staged), as ONE statement, in the shape of replace_day.sql: staged rows already held
-- are replaced (every column), new ones inserted, held rows of those events that are not staged deleted. Rows of
-- other events are never touched.
MERGE ${table} AS target
USING (
  SELECT * FROM (
    SELECT ${source_columns}, FALSE AS _gone
    FROM ${staging}
    WHERE `timestamp` >= @start AND `timestamp` < @end AND event_id IN UNNEST(@event_ids)
    QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at DESC) = 1
  )
  UNION ALL
  SELECT ${columns}, TRUE AS _gone
  FROM ${table} AS held
  WHERE held.`timestamp` >= @start AND held.`timestamp` < @end AND held.event_id IN UNNEST(@event_ids)
    AND held.event_id NOT IN (SELECT event_id FROM ${staging})
) AS source
ON target.event_id = source.event_id AND target.`timestamp` >= @start AND target.`timestamp` < @end
WHEN MATCHED AND source._gone THEN DELETE
WHEN MATCHED THEN UPDATE SET ${update_set}
WHEN NOT MATCHED AND NOT source._gone THEN INSERT (${columns}) VALUES (${insert_values})
