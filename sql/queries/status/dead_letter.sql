-- The open dead letter by consumer and error kind: how many events, the oldest failure's age, the most retries.
SELECT consumer,
       error_kind,
       count(*) AS events,
       extract(epoch FROM now() - min(first_failed_at))::float8 AS oldest_seconds,
       max(retry_count) AS max_retries
FROM event_failures
WHERE resolved_at IS NULL
GROUP BY consumer, error_kind
ORDER BY consumer, error_kind
