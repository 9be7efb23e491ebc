-- Staging from the load's Parquet files on S3 (uploaded under <prefix>/<load_id>/). SERIALIZETOJSON loads the
-- nested columns (the geo_location/device_info structs) into SUPER; the JSON columns are Parquet strings with
-- the JSON logical type.
COPY platform_events_staging FROM {source}
IAM_ROLE {iam_role}
FORMAT AS PARQUET SERIALIZETOJSON
