-- The seed's every-15-minutes cleanup: expired figures go.
SELECT cleanup_expired_metrics()
