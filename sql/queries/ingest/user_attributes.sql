-- What the pipeline joins to each event by user_id (in Arrow, ingest/pipeline_rows.py): read once per extraction.
SELECT user_id, user_role, signed_up_at FROM user_attributes
