-- Exact money in the aggregations. event_aggregations.amount_sum stays numeric without precision or scale: it
-- holds the exact sum of the period's amounts, whatever their size (jsonb's numbers are exact, and so is the sum).
-- The lake's aggregation table and the engines hold DECIMAL(38, 9) (29 integer digits, 9 decimals): a sum that does
-- not fit is NULL there, never rounded, and amount_overflow is true for the row in every store (here too, beside
-- the exact sum), so that the amount_sums_fit check fails on it. Rows computed before this migration have NULL
-- (unknown: their amounts were read through a double and a DECIMAL(38, 9) cast -- rebuild those periods); every
-- row written from now on says true or false.
ALTER TABLE event_aggregations ADD COLUMN amount_overflow boolean;
ALTER TABLE event_aggregations ALTER COLUMN amount_overflow SET DEFAULT false;
COMMENT ON COLUMN event_aggregations.amount_sum IS
    'Exact sum of the amount field (event_schemas.amount_field) of the period''s events; NULL for types without one.';
COMMENT ON COLUMN event_aggregations.amount_overflow IS
    'true: amount_sum does not fit DECIMAL(38, 9), so the lake and the engines hold NULL for it; NULL: computed '
    'before exact amounts (0013).';
