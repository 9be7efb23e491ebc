-- One column the schema gained ({column} is a line of create_table.sql); never drops.
ALTER TABLE {table} ADD COLUMN {column}
