-- Serialises rebuilds of one aggregation_type (held until the transaction ends): two runs rebuilding the same
-- periods at once would otherwise both delete, then both insert (a primary-key violation for the second).
SELECT pg_advisory_xact_lock(hashtext('workdev.aggregations'), hashtext(%(aggregation_type)s))
