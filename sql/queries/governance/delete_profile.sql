-- The erased user's profile (the copy enrichment reads through user_attributes).
DELETE FROM user_profiles WHERE user_id = %(user_id)s
