"""The seed's monitoring queries and GDPR statement, verbatim: the tests run them as written."""

# From the seed's "Monitoring & Observability" and "GDPR Compliance" sections.
CHECK_SYNC_STATUS = """
SELECT * FROM warehouse_sync_status
ORDER BY created_at DESC
LIMIT 10;
"""
EVENT_PROCESSING_METRICS = """
SELECT
  processing_status,
  COUNT(*) as count,
  AVG(retry_count) as avg_retries
FROM platform_events
WHERE created_at > NOW() - INTERVAL '1 hour'
GROUP BY processing_status;
"""
FAILED_EVENTS = """
SELECT event_id, event_type, error_message, retry_count
FROM platform_events
WHERE processing_status = 'failed'
ORDER BY created_at DESC
LIMIT 20;
"""
REALTIME_METRICS = """
SELECT metric_key, metric_value, calculated_at
FROM platform_metrics_realtime
WHERE expires_at > NOW()
ORDER BY calculated_at DESC;
"""
GDPR_ANONYMIZE = """
-- Anonymize events for deleted user
UPDATE platform_events
SET
  user_id = NULL,
  event_data = event_data - 'email' - 'phone' - 'address',
  metadata = metadata - 'ip_address' - 'user_agent'
WHERE user_id = 'user-to-delete';
"""
