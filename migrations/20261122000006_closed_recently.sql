-- The review desk's counters count resolved and dismissed incidents closed recently: without
-- this index each count read every closed incident ever recorded.
CREATE INDEX incidents_closed_recently ON incidents (closed_at)
    WHERE status IN ('resolved', 'dismissed');
