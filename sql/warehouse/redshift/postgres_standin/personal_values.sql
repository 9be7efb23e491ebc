-- The stand-in's form of personal_values.sql (JSONB instead of SUPER).
SELECT event_data ->> 'email' AS email, event_data ->> 'phone' AS phone, event_data ->> 'address' AS address,
       COUNT(*)
FROM {table}
WHERE event_data -> 'email' IS NOT NULL OR event_data -> 'phone' IS NOT NULL OR event_data -> 'address' IS NOT NULL
GROUP BY 1, 2, 3
