-- Calls operators answered: their call history, so a report can follow after the call ended
-- (the live record in Redis expires).
CREATE TABLE answered_calls (
    call_id     text        PRIMARY KEY,
    switch_id   text        NOT NULL,
    line        text        NOT NULL,
    -- E.164; NULL when the caller withheld their number.
    caller_e164 text,
    -- The operator's pseudonym, never a real name.
    operator_id text        NOT NULL,
    answered_at timestamptz NOT NULL,
    ended_at    timestamptz
);
CREATE INDEX answered_calls_by_operator ON answered_calls (operator_id, answered_at DESC);

-- Incidents: one per report. What happened is also written, in full, into the first event of
-- the hash-chained log below, so a later edit of this row can be told from the record.
CREATE TABLE incidents (
    id                uuid        PRIMARY KEY,
    -- The console's id of the button press: a repeated request finds this row.
    request_id        text        NOT NULL UNIQUE,
    call_id           text        NOT NULL,
    switch_id         text        NOT NULL,
    line              text        NOT NULL,
    caller_e164       text,
    -- The reporting operator's pseudonym; sealed from supervisors when anonymous.
    reporter          text        NOT NULL,
    anonymous         boolean     NOT NULL,
    category          text        NOT NULL CHECK (category IN ('abusive_language', 'sexual_misconduct',
                          'threat_or_violence', 'identity_probing', 'illegal_content', 'minor_suspected',
                          'self_harm_risk', 'oversharing', 'fraud_or_spam', 'other')),
    severity          text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    note              text        NOT NULL,
    block_choice      text        NOT NULL CHECK (block_choice IN ('none', 'from_me', 'global_request')),
    -- How the report came: end_and_flag, flag_call or report_past_call.
    source            text        NOT NULL,
    debrief_requested boolean     NOT NULL,
    escalated         boolean     NOT NULL,
    needs_attention   boolean     NOT NULL,
    status            text        NOT NULL DEFAULT 'open',
    created_at        timestamptz NOT NULL
);
-- Recent incidents against a caller (recent_flags, repeated-report blocks).
CREATE INDEX incidents_by_caller ON incidents (caller_e164, created_at) WHERE caller_e164 IS NOT NULL;
-- The incidents of a call (a TERMINATE acknowledged by its switch is linked to them).
CREATE INDEX incidents_by_call ON incidents (call_id);

-- The append-only, hash-chained log of each incident: hash = SHA-256(prev_hash || canonical
-- event). `callwarden verify` walks it.
CREATE TABLE incident_events (
    incident_id uuid        NOT NULL REFERENCES incidents (id),
    seq         integer     NOT NULL CHECK (seq >= 1),
    at          timestamptz NOT NULL,
    -- A pseudonym, or "system" for what the service did by itself.
    actor       text        NOT NULL,
    kind        text        NOT NULL,
    details     jsonb       NOT NULL,
    prev_hash   bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (incident_id, seq)
);

CREATE FUNCTION incident_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incident_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER incident_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();
CREATE TRIGGER incident_events_no_truncate
    BEFORE TRUNCATE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION incident_events_append_only();
