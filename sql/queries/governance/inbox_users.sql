-- Users the seed's GDPR statement anonymised through the view that no open request covers yet.
SELECT DISTINCT i.user_id::text
FROM gdpr_erasure_inbox i
WHERE NOT EXISTS (SELECT 1 FROM gdpr_erasure_subjects s WHERE s.user_id = i.user_id)
ORDER BY 1
