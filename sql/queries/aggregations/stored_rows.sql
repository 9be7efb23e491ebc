-- PostgreSQL: the rows event_aggregations holds of one aggregation type (the asset's dagster/row_count).
SELECT count(*) FROM event_aggregations WHERE aggregation_type = %(aggregation_type)s
