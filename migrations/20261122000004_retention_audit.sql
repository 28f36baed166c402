-- Retention with legal hold, and the audit log of incident reads.

-- New events hash their sensitive fields as salted digests (scheme 2), so retention can remove
-- the content and the salt, keep the digests, and leave the chain verifiable. Events written
-- before this hash their details whole (scheme 1) and cannot be redacted.
ALTER TABLE incident_events ADD COLUMN scheme smallint NOT NULL DEFAULT 1 CHECK (scheme IN (1, 2));
ALTER TABLE incident_events ADD COLUMN salt bytea CHECK (salt IS NULL OR length(salt) = 16);

-- Still append-only, but for one change: retention redacting a scheme-2 event (new details,
-- salt dropped) inside a transaction that says so. Nothing the chain links may change, and the
-- chain verifier checks the redacted details against the stored hash.
CREATE OR REPLACE FUNCTION incident_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested: OLD and NEW exist only for row-level UPDATE.
    IF TG_OP = 'UPDATE' THEN
        IF current_setting('callwarden.redacting', true) = 'on'
           AND OLD.scheme = 2 AND NEW.scheme = 2 AND NEW.salt IS NULL
           AND NEW.incident_id = OLD.incident_id AND NEW.seq = OLD.seq AND NEW.at = OLD.at
           AND NEW.actor = OLD.actor AND NEW.kind = OLD.kind
           AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'incident_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Legal hold: retention leaves the incident whole until the hold is released.
ALTER TABLE incidents ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;
-- When retention removed the caller's number and the notes.
ALTER TABLE incidents ADD COLUMN redacted_at timestamptz;
-- Closed incidents retention has yet to visit, oldest first.
CREATE INDEX incidents_due_for_retention ON incidents (closed_at)
    WHERE redacted_at IS NULL AND NOT legal_hold AND status IN ('resolved', 'dismissed');
-- Answered calls whose caller retention has yet to remove.
CREATE INDEX answered_calls_with_caller ON answered_calls (answered_at)
    WHERE caller_e164 IS NOT NULL;

-- Who read which incident, when, through which RPC. Append-only like the chain, but for
-- retention removing rows older than its period (inside a transaction that says so).
CREATE TABLE incident_reads (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    -- The reader's pseudonym (the token's subject) and role.
    reader      text        NOT NULL,
    reader_role text        NOT NULL,
    incident_id uuid        NOT NULL,
    -- GetIncident, ListIncidents, WatchIncidents, ExportIncident.
    rpc         text        NOT NULL
);
CREATE INDEX incident_reads_by_incident ON incident_reads (incident_id, id);
CREATE INDEX incident_reads_by_reader ON incident_reads (reader, id);
-- Retention removes the oldest first.
CREATE INDEX incident_reads_by_time ON incident_reads (at);

CREATE FUNCTION incident_reads_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('callwarden.redacting', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'incident_reads is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER incident_reads_no_update_or_delete
    BEFORE UPDATE OR DELETE ON incident_reads
    FOR EACH ROW EXECUTE FUNCTION incident_reads_append_only();
CREATE TRIGGER incident_reads_no_truncate
    BEFORE TRUNCATE ON incident_reads
    FOR EACH STATEMENT EXECUTE FUNCTION incident_reads_append_only();
