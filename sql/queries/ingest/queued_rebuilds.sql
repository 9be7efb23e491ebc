SELECT event_date FROM warehouse_rebuild_queue WHERE consumer = %(consumer)s ORDER BY event_date
