SELECT partition_name, range_start, range_end, is_default FROM event_store_partitions()
