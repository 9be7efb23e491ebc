-- The dashboard's real-time figures, cached in platform_metrics_realtime with a TTL.

-- Compute every figure now and store it, valid for p_ttl. Returns the fresh rows.
CREATE FUNCTION refresh_realtime_metrics(p_ttl interval DEFAULT interval '5 minutes')
RETURNS SETOF platform_metrics_realtime
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_now       timestamptz := now();
    v_day_start timestamptz := date_trunc('day', now(), 'UTC');
    v_watermark bigint;
BEGIN
    IF p_ttl IS NULL OR p_ttl <= interval '0' OR p_ttl > interval '1 day' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('ttl must be between 0 and 1 day, got %s', p_ttl);
    END IF;
    SELECT coalesce(min(tx_watermark), 0) INTO v_watermark FROM pipeline_watermarks WHERE enabled;

    RETURN QUERY
    WITH recent AS (
        SELECT e.event_type, e.user_id, e."timestamp", e.event_data
        FROM platform_event_store e
        WHERE e."timestamp" >= least(v_day_start, v_now - interval '1 hour') AND e."timestamp" <= v_now
    ), figures AS (
        SELECT
            count(DISTINCT user_id) FILTER (WHERE "timestamp" >= v_now - interval '1 hour') AS active_users_last_hour,
            count(*) FILTER (WHERE "timestamp" >= v_now - interval '1 hour') AS events_last_hour,
            count(*) FILTER (WHERE "timestamp" >= v_day_start) AS events_today,
            count(*) FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'project.created') AS projects_created_today,
            count(*) FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'proposal.submitted') AS proposals_submitted_today,
            count(*) FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'payment.completed') AS payments_completed_today,
            coalesce(sum(CASE WHEN jsonb_typeof(event_data -> 'amount') = 'number' THEN (event_data ->> 'amount')::numeric END)
                     FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'payment.completed'), 0) AS payments_amount_today,
            count(*) FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'search.performed') AS searches_today,
            coalesce(round(avg(CASE WHEN jsonb_typeof(event_data -> 'search_time_ms') = 'number'
                                    THEN (event_data ->> 'search_time_ms')::numeric END)
                     FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'search.performed'), 2), 0) AS avg_search_time_ms_today,
            count(*) FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'user.login') AS logins_today,
            count(*) FILTER (WHERE "timestamp" >= v_day_start AND event_type = 'user.registered') AS registrations_today
        FROM recent
    ), all_figures(metric_key, metric_value) AS (
        SELECT k, v
        FROM figures f,
        LATERAL (VALUES
            ('active_users_last_hour', f.active_users_last_hour::numeric),
            ('events_last_hour', f.events_last_hour::numeric),
            ('events_today', f.events_today::numeric),
            ('projects_created_today', f.projects_created_today::numeric),
            ('proposals_submitted_today', f.proposals_submitted_today::numeric),
            ('payments_completed_today', f.payments_completed_today::numeric),
            ('payments_amount_today', f.payments_amount_today),
            ('searches_today', f.searches_today::numeric),
            ('avg_search_time_ms_today', f.avg_search_time_ms_today),
            ('logins_today', f.logins_today::numeric),
            ('registrations_today', f.registrations_today::numeric),
            ('failed_events', (SELECT count(*) FROM event_failures WHERE resolved_at IS NULL)::numeric),
            ('pending_events', (SELECT count(*) FROM platform_event_store p WHERE p.tx_id >= v_watermark)::numeric)
        ) AS m(k, v)
    )
    INSERT INTO platform_metrics_realtime AS t (metric_key, metric_value, calculated_at, expires_at)
    SELECT a.metric_key, a.metric_value, v_now, v_now + p_ttl FROM all_figures a
    ON CONFLICT (metric_key) DO UPDATE
        SET metric_value = excluded.metric_value, calculated_at = excluded.calculated_at,
            expires_at = excluded.expires_at, dimensions = excluded.dimensions
    RETURNING t.*;
END
$$;

-- The dashboard's figures: the cached ones while they are valid, recomputed when any has expired.
CREATE FUNCTION get_dashboard_metrics(p_ttl interval DEFAULT interval '5 minutes')
RETURNS SETOF platform_metrics_realtime
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- All figures are computed together and expire together: serve them while none has expired.
    IF EXISTS (SELECT 1 FROM platform_metrics_realtime)
       AND NOT EXISTS (SELECT 1 FROM platform_metrics_realtime WHERE expires_at <= now()) THEN
        RETURN QUERY SELECT * FROM platform_metrics_realtime WHERE expires_at > now() ORDER BY metric_key;
    ELSE
        RETURN QUERY SELECT * FROM refresh_realtime_metrics(p_ttl) ORDER BY metric_key;
    END IF;
END
$$;

-- Remove expired figures (the seed's every-15-minutes cleanup). Returns how many went.
CREATE FUNCTION cleanup_expired_metrics() RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (DELETE FROM platform_metrics_realtime WHERE expires_at <= now() RETURNING 1)
    SELECT count(*) FROM gone
$$;
