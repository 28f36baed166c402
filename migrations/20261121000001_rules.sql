-- Rules: the system of record of who is blocked (or explicitly allowed), where and until when.
-- Rules are never deleted: removal stamps removed_at/removed_by, so the record keeps who blocked
-- whom and when. The Redis index holds only active rules and is rebuilt from this table.
CREATE TABLE rules (
    id          uuid        PRIMARY KEY,
    -- Canonical pattern: '+48601234567' (exact) or '+4870012*' (prefix).
    pattern     text        NOT NULL CHECK (pattern ~ '^\+[0-9]{1,15}\*?$'),
    effect      text        NOT NULL CHECK (effect IN ('block', 'allow')),
    scope_kind  text        NOT NULL CHECK (scope_kind IN ('global', 'line', 'operator')),
    -- The line (E.164 or name) or the operator pseudonym; '' for global.
    scope_value text        NOT NULL,
    reason      text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    removed_at  timestamptz,
    removed_by  text,
    -- Last change (creation or removal): lets an index rebuild catch up with concurrent writes.
    changed_at  timestamptz NOT NULL,
    CHECK ((scope_kind = 'global') = (scope_value = '')),
    CHECK ((removed_at IS NULL) = (removed_by IS NULL))
);

-- What a check (and an index write) looks up: the active rules of one (pattern, scope).
CREATE INDEX rules_active_by_key ON rules (pattern, scope_kind, scope_value) WHERE removed_at IS NULL;
CREATE INDEX rules_changed_at ON rules (changed_at);
