"""Moving events from the PostgreSQL store into a warehouse, exactly once: sweeps by transaction id, day
rebuilds, the dead letter and its replay. Plain Python (no Dagster): the assets call it."""
