UPDATE event_failures SET error_message = %(error_message)s WHERE event_id = %(event_id)s
