-- One column the Arrow schema gained (${column}: `name` TYPE, always NULLABLE); never drops.
ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${column}
