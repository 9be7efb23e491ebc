-- Replace step 2: one batch of the range's rows, bound parameters ({rows} is "(%s, ...), (...)").
INSERT INTO {table} ({columns}) VALUES {rows}
