-- Recompute every dashboard figure now, valid for %(ttl)s (see refresh_realtime_metrics in 0006).
SELECT metric_key, metric_value, calculated_at, expires_at FROM refresh_realtime_metrics(%(ttl)s::interval)
ORDER BY metric_key
