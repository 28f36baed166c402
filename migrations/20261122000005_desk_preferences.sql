-- The review desk's per-user settings: the language and time zone a supervisor chose. Absent
-- values mean "as the browser asks".
CREATE TABLE desk_preferences (
    subject    text PRIMARY KEY,
    locale     text,
    time_zone  text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
