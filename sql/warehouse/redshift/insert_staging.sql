-- One batch of rows into staging, bound parameters; {rows} is "(%s, ..., <json>), (...)" with the dialect's
-- JSON conversion for the SUPER columns (JSON_PARSE(%s) on Redshift).
INSERT INTO platform_events_staging ({columns}) VALUES {rows}
