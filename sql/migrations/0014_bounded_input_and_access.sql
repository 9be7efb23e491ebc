-- Bounded input and per-user access (issue 12, items 5 and 7). New SQLSTATEs:
--   WD011 payload nested too deep (an InvalidPayload)    WD012 access denied (no signed-in user, another user's events)
--
-- Limits (one place: event_query_limits(); workdev_pipeline/query_limits.py mirrors them, a test keeps them equal):
--   payloads     event_data and metadata at most 32 levels deep (the top-level object is level 1; every nested
--                object or array adds one), checked at emission with the other event_rejection() rules
--   event pages  limit 1..1000, offset 0..100000, a range of at most 93 days; limit and offset are bigint, so an
--                out-of-range value from any caller is a WD010, never "function does not exist"
--   aggregations at most 50,000 rows returned (a year of daily rows of every type is 11,712) over at most
--                1,100 days; event_aggregation_totals() counts exactly the events those rows count
--
-- What a reader of the query functions sees, decided by event_reader_scope() from the calling role (the role set
-- with SET ROLE, else the session's login; a superuser, the functions' owner or a member of workdev_pipeline reads
-- in full; a login in both workdev_app and workdev_analyst is treated as workdev_app):
--   every role   payload keys naming a network identity removed at any depth (is_network_key(): IP addresses,
--                user agents, forwarding headers, in any case and spelling); a stored payload deeper than the limit
--                is not returned (event_data/metadata NULL, payload_error says why)
--   workdev_app  only the events of the signed-in user, named by the session setting workdev.user_id (set it per
--                transaction: SELECT set_config('workdev.user_id', '<uuid>', true)); without it WD012, and asking
--                for another user's events is WD012
--   workdev_analyst  pseudonymised events only (analyst_events, or the query functions): user_id replaced by a
--                keyed pseudonym (a UUID, stable per user, the key unreadable by analysts), entity_id too where the
--                entity is a user (entity_type 'user' or 'profile'), payload strings under keys naming a user id
--                (…user_id, …userId) pseudonymised the same way, personal keys (email, phone, …address) removed;
--                a user filter (p_user_id) is a pseudonym. No raw events (platform_events, pipeline_event_rows),
--                no user_attributes, no dead-letter error messages.
-- workdev.user_id, when set, narrows every role's reads to that user.

-- The limits, in one place.
CREATE FUNCTION event_query_limits(
    OUT max_payload_depth integer, OUT max_page_size bigint, OUT max_offset bigint, OUT max_range_days integer,
    OUT max_aggregation_rows bigint, OUT max_aggregation_days integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 32, 1000::bigint, 100000::bigint, 93, 50000::bigint, 1100 $$;

-- Whether a JSON value nests deeper than max_payload_depth (32): a container at level 32 (the root is level 0)
-- is the 33rd level. The jsonpath walks no deeper than that level, so a document of any depth costs at most a
-- walk of its first 33 levels (about a microsecond for a typical payload).
CREATE FUNCTION jsonb_too_deep(p_value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_path_exists(p_value, 'strict $.**{32} ? (@.type() == "object" || @.type() == "array")')
$$;

-- event_rejection (0004) with the depth rule added after the size rules.
CREATE OR REPLACE FUNCTION event_rejection(
    p_schema event_schemas, p_event_type text, p_user_id uuid, p_event_data jsonb, p_metadata jsonb,
    p_timestamp timestamptz, p_entity_type text, p_entity_id text, p_source text
) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_event_type IS NULL OR p_event_type = '' THEN
            'WD001|event_type is required'
        WHEN (p_schema).event_type IS NULL THEN
            format('WD001|unknown event type %s (not registered in event_schemas)', quote_literal(left(p_event_type, 100)))
        WHEN NOT (p_schema).active THEN
            format('WD002|event type %s is inactive', quote_literal(p_event_type))
        WHEN p_event_data IS NULL OR jsonb_typeof(p_event_data) <> 'object' THEN
            format('WD003|event_data must be a JSON object, got %s', coalesce(jsonb_typeof(p_event_data), 'null'))
        WHEN p_metadata IS NOT NULL AND jsonb_typeof(p_metadata) <> 'object' THEN
            format('WD003|metadata must be a JSON object, got %s', jsonb_typeof(p_metadata))
        WHEN octet_length(p_event_data::text) > (p_schema).max_payload_bytes THEN
            format('WD004|event_data is %s bytes, over the %s-byte limit of %s',
                   octet_length(p_event_data::text), (p_schema).max_payload_bytes, quote_literal(p_event_type))
        WHEN p_metadata IS NOT NULL AND octet_length(p_metadata::text) > 8192 THEN
            format('WD004|metadata is %s bytes, over the 8192-byte limit', octet_length(p_metadata::text))
        WHEN jsonb_too_deep(p_event_data) THEN
            'WD011|event_data is nested deeper than 32 levels'
        WHEN p_metadata IS NOT NULL AND jsonb_too_deep(p_metadata) THEN
            'WD011|metadata is nested deeper than 32 levels'
        WHEN NOT p_event_data ?& (p_schema).required_keys THEN
            format('WD005|event_data of %s lacks required keys: %s', quote_literal(p_event_type),
                   event_missing_keys(p_event_data, (p_schema).required_keys))
        WHEN (p_schema).requires_user AND p_user_id IS NULL THEN
            format('WD006|event type %s requires a user_id', quote_literal(p_event_type))
        WHEN p_timestamp > now() + interval '5 minutes' THEN
            format('WD007|timestamp %s is in the future (more than 5 minutes ahead of the server clock)', p_timestamp)
        WHEN p_timestamp < now() - make_interval(days => (p_schema).retention_days) THEN
            format('WD007|timestamp %s is older than the %s-day retention of %s',
                   p_timestamp, (p_schema).retention_days, quote_literal(p_event_type))
        WHEN length(p_entity_type) > 64 THEN 'WD008|entity_type is longer than 64 characters'
        WHEN length(p_entity_id) > 128 THEN 'WD008|entity_id is longer than 128 characters'
        WHEN length(p_source) > 64 THEN 'WD008|source is longer than 64 characters'
    END
$$;

-- Redaction rules, by key name. A key is compared in lower case with everything but letters and digits removed
-- (IP_Address, ip-address, ipAddress and "IP address" are all "ipaddress").
-- Network identity, hidden from every reader of the query functions and from analysts: the key contains ipaddr,
-- useragent, forwarded or remoteaddr, or is ip / ips / ipv4 / ipv6 / ua, optionally after one of the prefixes
-- x, client, remote, real, xreal, user, source, src, peer, origin, cfconnecting, trueclient, xclient, public,
-- private, device, last, login (client_ip, X-Real-IP, cf_connecting_ip, ...).
CREATE FUNCTION is_network_key(p_key text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT k ~ '(ipaddr|useragent|forwarded|remoteaddr)'
        OR k ~ '^(x|client|remote|real|xreal|user|source|src|peer|origin|cfconnecting|trueclient|xclient|public|private|device|last|login)?(ip|ips|ipv4|ipv6)$'
        OR k = 'ua'
    FROM (SELECT regexp_replace(lower(p_key), '[^a-z0-9]', '', 'g') AS k) n
$$;

-- Personal data, hidden from analysts: the key contains email or phone, or ends with address.
CREATE FUNCTION is_personal_key(p_key text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT k ~ '(email|phone|address$)' FROM (SELECT regexp_replace(lower(p_key), '[^a-z0-9]', '', 'g') AS k) n
$$;

-- A user id, pseudonymised for analysts: the key ends with userid (user_id, profile_user_id, recipientUserId).
CREATE FUNCTION is_user_id_key(p_key text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(lower(p_key), '[^a-z0-9]', '', 'g') ~ 'userid$'
$$;

-- The secret of the analysts' pseudonyms; readable by the schema owner only (no grants).
CREATE TABLE pseudonym_keys (
    name       text PRIMARY KEY,
    key        bytea NOT NULL CHECK (octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pseudonym_keys (name, key)
VALUES ('analyst', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));

-- A keyed pseudonym of a value (a user id), as a UUID: the first 16 bytes of sha256(key || lower(value)).
CREATE FUNCTION pseudonym(p_key bytea, p_value text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT encode(substring(sha256(p_key || convert_to(lower(p_value), 'UTF8')) FROM 1 FOR 16), 'hex')::uuid
$$;

-- A payload as a reader may see it: network keys removed at any depth; with an analyst's pseudonym key, personal
-- keys removed too and strings under user-id keys pseudonymised. The caller checks the depth first
-- (readable_payload), so the recursion is at most 32 deep.
CREATE FUNCTION redacted_payload(p_value jsonb, p_key bytea) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(p_value)
        WHEN 'object' THEN (
            SELECT coalesce(jsonb_object_agg(e.key,
                       CASE WHEN p_key IS NOT NULL AND jsonb_typeof(e.value) = 'string' AND is_user_id_key(e.key)
                            THEN to_jsonb(pseudonym(p_key, e.value #>> '{}')::text)
                            ELSE redacted_payload(e.value, p_key) END), '{}'::jsonb)
            FROM jsonb_each(p_value) e
            WHERE NOT is_network_key(e.key) AND (p_key IS NULL OR NOT is_personal_key(e.key)))
        WHEN 'array' THEN (
            SELECT coalesce(jsonb_agg(redacted_payload(a.value, p_key) ORDER BY a.n), '[]'::jsonb)
            FROM jsonb_array_elements(p_value) WITH ORDINALITY a(value, n))
        ELSE p_value
    END
$$;

-- redacted_payload of a stored payload, or NULL when it nests deeper than the limit (see payload_error).
CREATE FUNCTION readable_payload(p_value jsonb, p_key bytea) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN NOT jsonb_too_deep(p_value) THEN redacted_payload(p_value, p_key) END
$$;

-- Why a stored event's payloads are not returned, or NULL when they are.
CREATE FUNCTION payload_error(p_event_data jsonb, p_metadata jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT nullif(concat_ws('; ',
        CASE WHEN jsonb_too_deep(p_event_data) THEN 'event_data is nested deeper than 32 levels: not returned' END,
        CASE WHEN jsonb_too_deep(p_metadata) THEN 'metadata is nested deeper than 32 levels: not returned' END), '')
$$;

-- Who is calling the query functions: 'full' (a superuser, the functions' owner, workdev_pipeline), 'app'
-- (workdev_app) or 'analyst' (workdev_analyst). The caller is the role set with SET ROLE, else the session's
-- login: inside these SECURITY DEFINER functions current_user is the owner, not the caller.
CREATE FUNCTION event_reader_scope() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
    v_caller text := coalesce(nullif(current_setting('role'), 'none'), session_user);
BEGIN
    IF v_caller = current_user OR (SELECT rolsuper FROM pg_roles WHERE rolname = v_caller)
       OR pg_has_role(v_caller, 'workdev_pipeline', 'USAGE') THEN
        RETURN 'full';
    ELSIF pg_has_role(v_caller, 'workdev_app', 'USAGE') THEN
        RETURN 'app';
    ELSIF pg_has_role(v_caller, 'workdev_analyst', 'USAGE') THEN
        RETURN 'analyst';
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'WD012', MESSAGE = format('role %s may not read events', quote_ident(v_caller));
END
$$;

-- The user filter a read runs with: the signed-in user (workdev.user_id) when one is set, else p_user_id; the
-- application role must have a signed-in user and may not ask for anyone else.
CREATE FUNCTION event_reader_user(p_scope text, p_user_id uuid) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_setting text := nullif(btrim(current_setting('workdev.user_id', true)), '');
    v_acting  uuid;
BEGIN
    IF v_setting IS NOT NULL THEN
        BEGIN
            v_acting := v_setting::uuid;
        EXCEPTION WHEN invalid_text_representation THEN
            RAISE EXCEPTION USING ERRCODE = 'WD012',
                MESSAGE = format('workdev.user_id %s is not a UUID', quote_literal(left(v_setting, 80)));
        END;
    END IF;
    IF v_acting IS NULL THEN
        IF p_scope = 'app' THEN
            RAISE EXCEPTION USING ERRCODE = 'WD012',
                MESSAGE = 'no signed-in user: the application role reads events only with workdev.user_id set',
                HINT = 'SELECT set_config(''workdev.user_id'', ''<user uuid>'', true) in the reading transaction';
        END IF;
        RETURN p_user_id;
    END IF;
    IF p_user_id IS NOT NULL AND p_user_id <> v_acting THEN
        RAISE EXCEPTION USING ERRCODE = 'WD012',
            MESSAGE = format('the signed-in user %s may not read the events of user %s', v_acting, p_user_id);
    END IF;
    RETURN v_acting;
END
$$;

-- The analysts' pseudonym key when the scope is 'analyst', else NULL.
CREATE FUNCTION event_reader_key(p_scope text) RETURNS bytea
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT key FROM pseudonym_keys WHERE name = 'analyst' AND p_scope = 'analyst'
$$;

-- Page and range checks of the event queries (bigint limit and offset: out-of-int-range values get a WD010 too).
DROP FUNCTION check_event_query(timestamptz, timestamptz, integer, integer, integer);
CREATE FUNCTION check_event_query(p_start timestamptz, p_end timestamptz, p_limit bigint, p_offset bigint,
                                  p_max_days integer DEFAULT NULL) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_days integer := coalesce(p_max_days, (SELECT max_range_days FROM event_query_limits()));
BEGIN
    IF p_start IS NULL OR p_end IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = 'a start and an end are required';
    ELSIF p_end <= p_start THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('end %s is not after start %s', p_end, p_start);
    ELSIF p_end - p_start > make_interval(days => v_days) THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010',
            MESSAGE = format('the range %s .. %s is longer than %s days', p_start, p_end, v_days);
    END IF;
    PERFORM check_event_page(p_limit, p_offset);
END
$$;

-- The same messages as workdev_pipeline/query_limits.py.
CREATE FUNCTION check_event_page(p_limit bigint, p_offset bigint) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v record;
BEGIN
    SELECT * INTO v FROM event_query_limits();
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > v.max_page_size THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('limit must be an integer between 1 and %s, got %s',
                                                                  v.max_page_size, coalesce(p_limit::text, 'NULL'));
    ELSIF p_offset IS NULL OR p_offset < 0 OR p_offset > v.max_offset THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('offset must be an integer between 0 and %s, got %s',
                                                                  v.max_offset, coalesce(p_offset::text, 'NULL'));
    END IF;
END
$$;

-- The store's events a read may match: platform_events_matching (0005), and for analysts the user's pseudonym.
CREATE FUNCTION platform_events_readable(p_start timestamptz, p_end timestamptz, p_event_types text[],
                                         p_user_id uuid, p_key bytea, p_pseudonym uuid)
RETURNS SETOF platform_event_store
LANGUAGE sql STABLE AS $$
    SELECT *
    FROM platform_events_matching(p_start, p_end, p_event_types, p_user_id) e
    WHERE p_pseudonym IS NULL OR pseudonym(p_key, e.user_id::text) = p_pseudonym
$$;

DROP FUNCTION query_platform_events(timestamptz, timestamptz, text[], uuid, integer, integer);
CREATE FUNCTION query_platform_events(
    p_start       timestamptz,
    p_end         timestamptz,
    p_event_types text[] DEFAULT NULL,
    p_user_id     uuid DEFAULT NULL,
    p_limit       bigint DEFAULT 100,
    p_offset      bigint DEFAULT 0
) RETURNS TABLE (
    event_id uuid, event_type text, event_category text, user_id uuid, entity_type text, entity_id text,
    event_data jsonb, metadata jsonb, source text, "timestamp" timestamptz, session_id uuid, payload_error text
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_scope     text;
    v_key       bytea;
    v_user      uuid;
BEGIN
    PERFORM check_event_query(p_start, p_end, p_limit, p_offset);
    v_scope := event_reader_scope();
    v_key := event_reader_key(v_scope);
    v_user := event_reader_user(v_scope, CASE WHEN v_key IS NULL THEN p_user_id END);
    RETURN QUERY
    SELECT m.event_id, m.event_type, m.event_category,
           CASE WHEN v_key IS NULL THEN m.user_id ELSE pseudonym(v_key, m.user_id::text) END,
           m.entity_type,
           CASE WHEN v_key IS NOT NULL AND m.entity_type IN ('user', 'profile') THEN pseudonym(v_key, m.entity_id)::text
                ELSE m.entity_id END,
           readable_payload(m.event_data, v_key), readable_payload(m.metadata, v_key),
           m.source, m."timestamp", m.session_id, payload_error(m.event_data, m.metadata)
    FROM platform_events_readable(p_start, p_end, p_event_types, v_user, v_key,
                                  CASE WHEN v_key IS NOT NULL THEN p_user_id END) m
    ORDER BY m."timestamp" DESC, m.event_id
    LIMIT p_limit OFFSET p_offset;
END
$$;

CREATE OR REPLACE FUNCTION count_platform_events(
    p_start       timestamptz,
    p_end         timestamptz,
    p_event_types text[] DEFAULT NULL,
    p_user_id     uuid DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_scope text;
    v_key   bytea;
    v_user  uuid;
BEGIN
    PERFORM check_event_query(p_start, p_end, 1, 0);
    v_scope := event_reader_scope();
    v_key := event_reader_key(v_scope);
    v_user := event_reader_user(v_scope, CASE WHEN v_key IS NULL THEN p_user_id END);
    RETURN (SELECT count(*)
            FROM platform_events_readable(p_start, p_end, p_event_types, v_user, v_key,
                                          CASE WHEN v_key IS NOT NULL THEN p_user_id END));
END
$$;

-- Aggregation queries: a known type and category, at most max_aggregation_days (the row limit is checked on
-- the rows themselves).
CREATE FUNCTION check_aggregation_query(p_aggregation_type text, p_start date, p_end date, p_event_category text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_days integer := (SELECT max_aggregation_days FROM event_query_limits());
BEGIN
    IF p_aggregation_type IS NULL OR p_aggregation_type NOT IN ('hourly', 'daily', 'weekly') THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010',
            MESSAGE = format('aggregation_type must be hourly, daily or weekly, got %s', coalesce(quote_literal(p_aggregation_type), 'NULL'));
    ELSIF p_event_category IS NOT NULL AND p_event_category NOT IN ('transaction', 'interaction', 'user_activity', 'content') THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('unknown event category %s', quote_literal(p_event_category));
    ELSIF p_start IS NULL OR p_end IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = 'a start and an end are required';
    ELSIF p_end < p_start THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('end %s is before start %s',
                                                                  to_char(p_end, 'YYYY-MM-DD'), to_char(p_start, 'YYYY-MM-DD'));
    ELSIF p_end - p_start + 1 > v_days THEN
        RAISE EXCEPTION USING ERRCODE = 'WD010', MESSAGE = format('the range %s .. %s is longer than %s days',
                                                                  to_char(p_start, 'YYYY-MM-DD'), to_char(p_end, 'YYYY-MM-DD'), v_days);
    END IF;
END
$$;

CREATE FUNCTION raise_aggregation_rows_exceeded() RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'WD010',
        MESSAGE = format('the range holds more than %s aggregation rows: narrow it (dates, event_category, event_types)',
                         (SELECT max_aggregation_rows FROM event_query_limits()));
END
$$;

-- The event_aggregations rows of periods starting in the days [p_start, p_end].
CREATE FUNCTION aggregation_rows_in(p_aggregation_type text, p_start date, p_end date, p_event_category text,
                                    p_event_types text[]) RETURNS SETOF event_aggregations
LANGUAGE sql STABLE AS $$
    SELECT a.*
    FROM event_aggregations a
    WHERE a.aggregation_type = p_aggregation_type
      AND a.period_start >= (p_start::timestamp AT TIME ZONE 'UTC')
      AND a.period_start < ((p_end + 1)::timestamp AT TIME ZONE 'UTC')
      AND (p_event_category IS NULL OR a.event_category = p_event_category)
      AND (p_event_types IS NULL OR a.event_type = ANY (p_event_types))
$$;

CREATE OR REPLACE FUNCTION query_event_aggregations(
    p_aggregation_type text,
    p_start            date,
    p_end              date,
    p_event_category   text DEFAULT NULL,
    p_event_types      text[] DEFAULT NULL
) RETURNS SETOF event_aggregations
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_max  bigint := (SELECT max_aggregation_rows FROM event_query_limits());
    v_rows bigint;
BEGIN
    PERFORM check_aggregation_query(p_aggregation_type, p_start, p_end, p_event_category);
    RETURN QUERY
    SELECT a.*
    FROM aggregation_rows_in(p_aggregation_type, p_start, p_end, p_event_category, p_event_types) a
    ORDER BY a.period_start, a.event_type
    LIMIT v_max + 1;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows > v_max THEN
        PERFORM raise_aggregation_rows_exceeded();
    END IF;
END
$$;

-- Totals over the rows query_event_aggregations returns: total_events is the sum of theirs; unique users and
-- sessions are exact (not summed) over the events those rows count -- the store's events of their periods and
-- types, less the dead letter's (open failures never reach the lake the aggregations are computed from).
CREATE FUNCTION event_aggregation_totals(
    p_aggregation_type text,
    p_start            date,
    p_end              date,
    p_event_category   text DEFAULT NULL,
    p_event_types      text[] DEFAULT NULL
) RETURNS TABLE (total_events bigint, unique_users bigint, unique_sessions bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_unit  text := CASE p_aggregation_type WHEN 'hourly' THEN 'hour' WHEN 'daily' THEN 'day' ELSE 'week' END;
    v_total bigint;
    v_rows  bigint;
    v_first timestamptz;
    v_last  timestamptz;
BEGIN
    PERFORM check_aggregation_query(p_aggregation_type, p_start, p_end, p_event_category);
    SELECT coalesce(sum(a.total_events), 0), count(*), min(a.period_start), max(a.period_end)
    INTO v_total, v_rows, v_first, v_last
    FROM aggregation_rows_in(p_aggregation_type, p_start, p_end, p_event_category, p_event_types) a;
    IF v_rows > (SELECT max_aggregation_rows FROM event_query_limits()) THEN
        PERFORM raise_aggregation_rows_exceeded();
    END IF;
    RETURN QUERY
    SELECT v_total, count(DISTINCT e.user_id), count(DISTINCT e.session_id)
    FROM platform_event_store e
    WHERE e."timestamp" >= v_first AND e."timestamp" < v_last
      AND (date_trunc(v_unit, e."timestamp", 'UTC'), e.event_type) IN (
            SELECT a.period_start, a.event_type
            FROM aggregation_rows_in(p_aggregation_type, p_start, p_end, p_event_category, p_event_types) a)
      AND NOT EXISTS (SELECT 1 FROM event_failures f WHERE f.event_id = e.event_id AND f.resolved_at IS NULL);
END
$$;

-- Replaced by event_aggregation_totals: its 93-day range refused what query_event_aggregations allowed, and its
-- total counted events (the dead letter's, unaggregated periods') that no row counts.
DROP FUNCTION event_range_totals(date, date, text, text[]);

-- Events as analysts see them (see the top of this file). security_barrier: no analyst-supplied condition runs
-- before the pseudonyms and redaction are applied.
CREATE VIEW analyst_events WITH (security_barrier) AS
SELECT e.event_id,
       e.event_type,
       e.event_category,
       pseudonym(k.key, e.user_id::text) AS user_id,
       e.entity_type,
       CASE WHEN e.entity_type IN ('user', 'profile') THEN pseudonym(k.key, e.entity_id)::text
            ELSE e.entity_id END AS entity_id,
       readable_payload(e.event_data, k.key) AS event_data,
       readable_payload(e.metadata, k.key) AS metadata,
       e.source,
       e."timestamp",
       e.session_id,
       e.processing_status,
       e.retry_count,
       e.created_at,
       e.processed_at,
       payload_error(e.event_data, e.metadata) AS payload_error
FROM platform_events e
CROSS JOIN (SELECT key FROM pseudonym_keys WHERE name = 'analyst') k;

-- Grants. New functions are not PUBLIC's.
REVOKE EXECUTE ON FUNCTION
    event_query_limits(), jsonb_too_deep(jsonb), is_network_key(text), is_personal_key(text), is_user_id_key(text),
    pseudonym(bytea, text), redacted_payload(jsonb, bytea), readable_payload(jsonb, bytea), payload_error(jsonb, jsonb),
    event_reader_scope(), event_reader_user(text, uuid), event_reader_key(text),
    check_event_query(timestamptz, timestamptz, bigint, bigint, integer), check_event_page(bigint, bigint),
    platform_events_readable(timestamptz, timestamptz, text[], uuid, bytea, uuid),
    query_platform_events(timestamptz, timestamptz, text[], uuid, bigint, bigint),
    check_aggregation_query(text, date, date, text), raise_aggregation_rows_exceeded(),
    aggregation_rows_in(text, date, date, text, text[]),
    event_aggregation_totals(text, date, date, text, text[])
FROM PUBLIC;
REVOKE ALL ON pseudonym_keys, analyst_events FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    query_platform_events(timestamptz, timestamptz, text[], uuid, bigint, bigint),
    event_aggregation_totals(text, date, date, text, text[]),
    event_query_limits()
TO workdev_app, workdev_analyst, workdev_pipeline;

-- The pipeline could execute every function (0007); it keeps that for the new ones.
GRANT EXECUTE ON FUNCTION
    jsonb_too_deep(jsonb), is_network_key(text), is_personal_key(text), is_user_id_key(text),
    pseudonym(bytea, text), redacted_payload(jsonb, bytea), readable_payload(jsonb, bytea), payload_error(jsonb, jsonb),
    event_reader_scope(), event_reader_user(text, uuid), event_reader_key(text),
    check_event_query(timestamptz, timestamptz, bigint, bigint, integer), check_event_page(bigint, bigint),
    platform_events_readable(timestamptz, timestamptz, text[], uuid, bytea, uuid),
    check_aggregation_query(text, date, date, text), raise_aggregation_rows_exceeded(),
    aggregation_rows_in(text, date, date, text, text[])
TO workdev_pipeline;

-- Analysts: pseudonymised events only. What the view computes runs as the analyst, so it may execute the
-- redaction functions (harmless without the key, which it cannot read).
REVOKE SELECT ON platform_events, pipeline_event_rows, user_attributes, event_failures FROM workdev_analyst;
GRANT SELECT (event_id, event_timestamp, event_type, consumer, error_kind, retry_count, first_failed_at,
              last_failed_at, resolved_at) ON event_failures TO workdev_analyst;
GRANT SELECT ON analyst_events TO workdev_analyst;
GRANT EXECUTE ON FUNCTION
    jsonb_too_deep(jsonb), is_network_key(text), is_personal_key(text), is_user_id_key(text),
    pseudonym(bytea, text), redacted_payload(jsonb, bytea), readable_payload(jsonb, bytea), payload_error(jsonb, jsonb)
TO workdev_analyst;
