-- Read paths for application code. The application role reads events only through these functions,
-- which bound every query (date range, page size) and never return raw IP addresses or user agents.
-- Limit violations raise SQLSTATE WD010.

CREATE FUNCTION check_event_query(p_start timestamptz, p_end timestamptz, p_limit integer, p_offset integer,
                                  p_max_days integer DEFAULT 93) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_start IS NULL OR p_end IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = 'a start and an end are required';
    ELSIF p_end <= p_start THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('end %s is not after start %s', p_end, p_start);
    ELSIF p_end - p_start > make_interval(days => p_max_days) THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010',
            MESSAGE = format('the range %s .. %s is longer than %s days', p_start, p_end, p_max_days);
    ELSIF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('limit must be between 1 and 1000, got %s', p_limit);
    ELSIF p_offset IS NULL OR p_offset < 0 OR p_offset > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('offset must be between 0 and 100000, got %s', p_offset);
    END IF;
END
$$;

-- The filter shared by the page and the count (inlined by the planner).
CREATE FUNCTION platform_events_matching(p_start timestamptz, p_end timestamptz, p_event_types text[],
                                         p_user_id uuid) RETURNS SETOF platform_event_store
LANGUAGE sql STABLE AS $$
    SELECT *
    FROM platform_event_store e
    WHERE e."timestamp" >= p_start AND e."timestamp" < p_end
      AND (p_event_types IS NULL OR e.event_type = ANY (p_event_types))
      AND (p_user_id IS NULL OR e.user_id = p_user_id)
$$;

CREATE FUNCTION query_platform_events(
    p_start       timestamptz,
    p_end         timestamptz,
    p_event_types text[] DEFAULT NULL,
    p_user_id     uuid DEFAULT NULL,
    p_limit       integer DEFAULT 100,
    p_offset      integer DEFAULT 0
) RETURNS TABLE (
    event_id uuid, event_type text, event_category text, user_id uuid, entity_type text, entity_id text,
    event_data jsonb, metadata jsonb, source text, "timestamp" timestamptz, session_id uuid
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM check_event_query(p_start, p_end, p_limit, p_offset);
    RETURN QUERY
    SELECT m.event_id, m.event_type, m.event_category, m.user_id, m.entity_type, m.entity_id, m.event_data,
           m.metadata - 'ip_address' - 'user_agent', m.source, m."timestamp", m.session_id
    FROM platform_events_matching(p_start, p_end, p_event_types, p_user_id) m
    ORDER BY m."timestamp" DESC, m.event_id
    LIMIT p_limit OFFSET p_offset;
END
$$;

CREATE FUNCTION count_platform_events(
    p_start       timestamptz,
    p_end         timestamptz,
    p_event_types text[] DEFAULT NULL,
    p_user_id     uuid DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM check_event_query(p_start, p_end, 1, 0);
    RETURN (SELECT count(*) FROM platform_events_matching(p_start, p_end, p_event_types, p_user_id));
END
$$;

CREATE FUNCTION query_event_aggregations(
    p_aggregation_type text,
    p_start            date,
    p_end              date,
    p_event_category   text DEFAULT NULL,
    p_event_types      text[] DEFAULT NULL
) RETURNS SETOF event_aggregations
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_aggregation_type IS NULL OR p_aggregation_type NOT IN ('hourly', 'daily', 'weekly') THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010',
            MESSAGE = format('aggregation_type must be hourly, daily or weekly, got %s', coalesce(quote_literal(p_aggregation_type), 'NULL'));
    END IF;
    IF p_event_category IS NOT NULL AND p_event_category NOT IN ('transaction', 'interaction', 'user_activity', 'content') THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('unknown event category %s', quote_literal(p_event_category));
    END IF;
    PERFORM check_event_query(p_start::timestamptz, (p_end + 1)::timestamptz, 1, 0,
                              CASE p_aggregation_type WHEN 'hourly' THEN 93 ELSE 1100 END);
    RETURN QUERY
    SELECT a.*
    FROM event_aggregations a
    WHERE a.aggregation_type = p_aggregation_type
      AND a.period_start >= (p_start::timestamp AT TIME ZONE 'UTC')
      AND a.period_start < ((p_end + 1)::timestamp AT TIME ZONE 'UTC')
      AND (p_event_category IS NULL OR a.event_category = p_event_category)
      AND (p_event_types IS NULL OR a.event_type = ANY (p_event_types))
    ORDER BY a.period_start, a.event_type;
END
$$;

-- Exact distinct users and sessions over a date range (not the sum of per-period figures).
CREATE FUNCTION event_range_totals(
    p_start          date,
    p_end            date,
    p_event_category text DEFAULT NULL,
    p_event_types    text[] DEFAULT NULL
) RETURNS TABLE (total_events bigint, unique_users bigint, unique_sessions bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM check_event_query(p_start::timestamptz, (p_end + 1)::timestamptz, 1, 0);
    RETURN QUERY
    SELECT count(*), count(DISTINCT e.user_id), count(DISTINCT e.session_id)
    FROM platform_event_store e
    WHERE e."timestamp" >= (p_start::timestamp AT TIME ZONE 'UTC')
      AND e."timestamp" < ((p_end + 1)::timestamp AT TIME ZONE 'UTC')
      AND (p_event_category IS NULL OR e.event_category = p_event_category)
      AND (p_event_types IS NULL OR e.event_type = ANY (p_event_types));
END
$$;
