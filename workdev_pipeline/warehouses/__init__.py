"""Remote warehouse engines (BigQuery, Redshift): the tables that the ingestion engine's day files are loaded into."""
