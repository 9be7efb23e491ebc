-- A warehouse starts consuming the store from its first transaction (watermark 0).
INSERT INTO pipeline_watermarks (consumer) VALUES (%(consumer)s) ON CONFLICT (consumer) DO NOTHING
