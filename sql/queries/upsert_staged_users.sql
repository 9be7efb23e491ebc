-- Move users COPYed into the temporary staged_users table into user_profiles (newer attributes win).
INSERT INTO user_profiles (user_id, role, signed_up_at, country)
SELECT user_id, role, signed_up_at, country
FROM staged_users
ON CONFLICT (user_id) DO UPDATE SET
    role = excluded.role,
    signed_up_at = excluded.signed_up_at,
    country = excluded.country,
    updated_at = now()
