-- Erasure by the catalog: a request is filed before it runs (runs and tags name the request, never the user),
-- other users' references to the erased user are replaced by the request's pseudonym, and the seed's GDPR
-- statement run against the platform_events view is recorded so the pipeline completes it everywhere.

ALTER TABLE gdpr_erasure_requests DROP CONSTRAINT gdpr_erasure_requests_status_check;
ALTER TABLE gdpr_erasure_requests ADD CONSTRAINT gdpr_erasure_requests_status_check
    CHECK (status IN ('requested', 'running', 'erased', 'nothing_found', 'failed'));
ALTER TABLE gdpr_erasure_requests
    ADD COLUMN pseudonym      uuid,                          -- replaces the user's id in other users' events
    ADD COLUMN session_rows   bigint NOT NULL DEFAULT 0,     -- events without a user in the user's sessions
    ADD COLUMN reference_rows bigint NOT NULL DEFAULT 0,     -- other users' events that named the user
    ADD COLUMN postgres_erased_at timestamptz;               -- PostgreSQL's part done (the stores' may remain)

-- The subject of an open request: the only place the raw user id is kept, deleted when the request closes.
CREATE TABLE gdpr_erasure_subjects (
    request_id bigint PRIMARY KEY REFERENCES gdpr_erasure_requests ON DELETE CASCADE,
    user_id    uuid NOT NULL
);

-- Events the seed's statement (UPDATE platform_events SET user_id = NULL, ... WHERE user_id = ...) anonymised
-- through the view: the pipeline files a request for their user, erases what the statement left (nested fields,
-- sessions, references) and rewrites the lake and the engines. Rows go when that request closes.
CREATE TABLE gdpr_erasure_inbox (
    user_id         uuid NOT NULL,
    event_id        uuid NOT NULL,
    event_timestamp timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, event_id)
);

CREATE OR REPLACE FUNCTION platform_events_write_through() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.event_id IS DISTINCT FROM OLD.event_id OR NEW."timestamp" IS DISTINCT FROM OLD."timestamp"
           OR NEW.event_type IS DISTINCT FROM OLD.event_type THEN
            RAISE EXCEPTION USING ERRCODE = 'WD020',
                MESSAGE = 'event_id, event_type and timestamp of a stored event cannot change';
        END IF;
        IF OLD.user_id IS NOT NULL AND NEW.user_id IS NULL THEN  -- the seed's GDPR statement
            INSERT INTO gdpr_erasure_inbox (user_id, event_id, event_timestamp)
            VALUES (OLD.user_id, OLD.event_id, OLD."timestamp")
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE platform_event_store
        SET user_id = NEW.user_id,
            entity_type = NEW.entity_type,
            entity_id = NEW.entity_id,
            event_data = NEW.event_data,
            metadata = NEW.metadata,
            source = NEW.source,
            session_id = NEW.session_id
        WHERE event_id = OLD.event_id AND "timestamp" = OLD."timestamp";
        RETURN NEW;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM platform_event_store WHERE event_id = OLD.event_id AND "timestamp" = OLD."timestamp";
        RETURN OLD;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'WD020',
        MESSAGE = 'insert events with emit_platform_event() or the client''s emit_many, not into the view';
END
$$;

GRANT SELECT, INSERT, DELETE ON gdpr_erasure_subjects, gdpr_erasure_inbox TO workdev_pipeline;
