-- The database's clock (seconds since the epoch): the ages of the lake's commits are measured against it.
SELECT extract(epoch FROM now())::float8
