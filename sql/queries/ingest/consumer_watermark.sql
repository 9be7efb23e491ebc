SELECT coalesce((SELECT tx_watermark FROM pipeline_watermarks WHERE consumer = %(consumer)s), 0)
