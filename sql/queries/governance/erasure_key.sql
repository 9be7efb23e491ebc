-- The secret the erasure ledger's hashes are keyed with (sha256(key || UTF-8 value)).
SELECT key FROM governance_keys WHERE name = 'erasure_hash'
