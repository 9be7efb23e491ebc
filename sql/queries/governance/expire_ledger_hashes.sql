-- The erasure ledger's retention: requests finished (erased, or nothing found) before the cut-off, with no work
-- of theirs still queued, lose their keyed hashes (user_hash, value_hashes); counts, days, status and dates stay.
-- Returns how many requests expired (dry run: would expire, nothing changed).
WITH expired AS (
    SELECT r.request_id
    FROM gdpr_erasure_requests r
    WHERE r.hashes_expired_at IS NULL AND r.status IN ('erased', 'nothing_found')
      AND r.finished_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM warehouse_event_refresh q WHERE q.request_id = r.request_id)
    FOR UPDATE OF r
), cleared AS (
    UPDATE gdpr_erasure_requests r
    SET user_hash = NULL, value_hashes = '{}', hashes_expired_at = now()
    FROM expired e
    WHERE r.request_id = e.request_id AND NOT %(dry_run)s
    RETURNING r.request_id
)
SELECT count(*) FROM expired
