DELETE FROM warehouse_rebuild_queue WHERE consumer = %(consumer)s AND event_date = %(event_date)s
