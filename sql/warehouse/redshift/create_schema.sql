-- The schema that holds platform_events ({schema} is substituted as a quoted identifier).
CREATE SCHEMA IF NOT EXISTS {schema}
