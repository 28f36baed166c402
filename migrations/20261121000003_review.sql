-- The review workflow. The row holds the current state for the queue and its filters; every
-- change is also an event in the incident's hash chain, which stays the record.

-- Anonymous reports: the reference supervisors see instead of the pseudonym. Random, so it
-- links to nobody, and stable, so statements can refer to "the reporter".
ALTER TABLE incidents ADD COLUMN reporter_ref text;
UPDATE incidents SET reporter_ref = 'sealed-' || left(replace(gen_random_uuid()::text, '-', ''), 16)
    WHERE anonymous;
ALTER TABLE incidents ADD CONSTRAINT incidents_sealed_have_ref
    CHECK (NOT anonymous OR reporter_ref IS NOT NULL);
ALTER TABLE incidents ADD COLUMN unsealed_at timestamptz;
ALTER TABLE incidents ADD COLUMN unsealed_by text;

-- Orders the queue: critical first.
ALTER TABLE incidents ADD COLUMN severity_rank smallint GENERATED ALWAYS AS (
    CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END
) STORED;

-- When a decision is due. Rows from before this migration get the default deadlines.
ALTER TABLE incidents ADD COLUMN deadline_at timestamptz;
UPDATE incidents SET deadline_at = created_at + CASE severity
    WHEN 'critical' THEN interval '15 minutes' WHEN 'high' THEN interval '1 hour'
    WHEN 'medium' THEN interval '8 hours' ELSE interval '72 hours' END;
ALTER TABLE incidents ALTER COLUMN deadline_at SET NOT NULL;
-- Set once the missed deadline of an unacknowledged critical incident was escalated.
ALTER TABLE incidents ADD COLUMN deadline_escalated_at timestamptz;

ALTER TABLE incidents ADD CONSTRAINT incidents_status_known
    CHECK (status IN ('open', 'acknowledged', 'resolved', 'dismissed'));
ALTER TABLE incidents ADD COLUMN acknowledged_at timestamptz;
ALTER TABLE incidents ADD COLUMN acknowledged_by text;
ALTER TABLE incidents ADD COLUMN closed_at timestamptz;
ALTER TABLE incidents ADD COLUMN closed_by text;
ALTER TABLE incidents ADD COLUMN outcome text CHECK (outcome IN ('no_action', 'warning_issued',
    'caller_blocked', 'referred_to_authorities', 'mediated'));
ALTER TABLE incidents ADD COLUMN authority text;
ALTER TABLE incidents ADD COLUMN reference text;
ALTER TABLE incidents ADD COLUMN block_rule_id uuid;
ALTER TABLE incidents ADD COLUMN resolution_note text;

-- The head of the chain: how many events, and the newest hash.
ALTER TABLE incidents ADD COLUMN version integer NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN chain_hash bytea;
UPDATE incidents i SET version = e.seq, chain_hash = e.hash
    FROM (SELECT DISTINCT ON (incident_id) incident_id, seq, hash FROM incident_events
          ORDER BY incident_id, seq DESC) e
    WHERE e.incident_id = i.id;

-- The review queue (OPEN and ACKNOWLEDGED) in urgent order, and its deadlines.
CREATE INDEX incidents_queue ON incidents (severity_rank DESC, created_at, id)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX incidents_queue_deadline ON incidents (deadline_at)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX incidents_queue_newest ON incidents (created_at DESC, id DESC)
    WHERE status IN ('open', 'acknowledged');
-- Closed incidents in urgent order, and everything newest first.
CREATE INDEX incidents_by_status ON incidents (status, severity_rank DESC, created_at, id);
CREATE INDEX incidents_newest ON incidents (created_at DESC, id DESC);
-- Filters.
CREATE INDEX incidents_by_line ON incidents (line, created_at);
CREATE INDEX incidents_by_reporter ON incidents (reporter, created_at);
-- A caller's incidents in urgent order (incidents_by_caller serves newest first).
CREATE INDEX incidents_by_caller_urgent ON incidents (caller_e164, severity_rank DESC, created_at, id);
-- A caller's still-sealed reporters, whose rules every view of the caller seals.
CREATE INDEX incidents_sealed_by_caller ON incidents (caller_e164, reporter)
    WHERE anonymous AND unsealed_at IS NULL;

-- Evidence is an event; one piece of evidence per content hash per incident.
CREATE UNIQUE INDEX incident_evidence_by_hash ON incident_events (incident_id, (details->>'sha256'))
    WHERE kind = 'evidence_attached';
