-- The erasure ledger's own retention: WORKDEV_ERASURE_LEDGER_RETENTION_DAYS (default 1096, 3 years) after a request
-- finished (erased, or nothing found), the daily retention run clears its keyed hashes -- the user's
-- (user_hash) and those of the values their events carried (value_hashes) -- and stamps hashes_expired_at. The
-- rest stays: request id, status, dates, rows per store, days and hours touched, notes, i.e. the audit trail
-- "request #N erased X rows on day D". A running or failed request, or one with work still queued, keeps them.
-- Once they are gone the request can no longer be linked to anyone, nor checked by erasure_leaves_no_trace.

ALTER TABLE gdpr_erasure_requests ALTER COLUMN user_hash DROP NOT NULL;
ALTER TABLE gdpr_erasure_requests ADD COLUMN hashes_expired_at timestamptz;
ALTER TABLE gdpr_erasure_requests ADD CONSTRAINT gdpr_erasure_requests_hashes_kept_until_expired
    CHECK (hashes_expired_at IS NOT NULL OR user_hash IS NOT NULL);
ALTER TABLE gdpr_erasure_requests ADD CONSTRAINT gdpr_erasure_requests_hashes_expire_when_finished
    CHECK (hashes_expired_at IS NULL OR (status IN ('erased', 'nothing_found') AND user_hash IS NULL
                                         AND value_hashes = '{}'));
CREATE INDEX gdpr_erasure_requests_hashes_expiry_idx ON gdpr_erasure_requests (finished_at)
    WHERE hashes_expired_at IS NULL AND status IN ('erased', 'nothing_found');

-- What each retention run cleared (a dry run: would clear).
ALTER TABLE retention_runs ADD COLUMN ledger_hashes_expired bigint NOT NULL DEFAULT 0;
