UPDATE pipeline_watermarks
SET tx_watermark = greatest(tx_watermark, %(tx_high)s), updated_at = now()
WHERE consumer = %(consumer)s
