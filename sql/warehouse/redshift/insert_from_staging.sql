-- Merge step 2 / day replace step 2: staging's rows, one per event_id (the last ingested, should a file hold
-- an event twice), so that a load redone leaves exactly one copy of each event.
INSERT INTO {table} ({columns})
SELECT {columns}
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at DESC) AS row_number_
    FROM platform_events_staging
) AS ranked
WHERE row_number_ = 1
