-- After COPY (S3 path, Redshift only): event_data and metadata are Parquet strings of the JSON logical type;
-- should COPY land any of them as a SUPER string rather than an object, parse it. A no-op for values that
-- arrived as objects (IS_VARCHAR is false), so harmless either way. Unproven: no Redshift in the tests.
UPDATE platform_events_staging
SET event_data = CASE WHEN IS_VARCHAR(event_data) THEN JSON_PARSE(event_data::VARCHAR) ELSE event_data END,
    metadata = CASE WHEN IS_VARCHAR(metadata) THEN JSON_PARSE(metadata::VARCHAR) ELSE metadata END
WHERE IS_VARCHAR(event_data) OR IS_VARCHAR(metadata)
