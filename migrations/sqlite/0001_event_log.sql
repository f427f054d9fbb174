-- The event log: one row per event, append-only.
--
-- `position` is the rowid: assigned in commit order (SQLite has one writer at a time) and never
-- reused, because deleting rows is refused. `event_id` is the UUID's 16 bytes. `data` and
-- `metadata` are JSON text; `recorded_at` is UTC RFC 3339 text with microseconds, set by the ledger.
CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    event_id    BLOB    NOT NULL UNIQUE CHECK (length(event_id) = 16),
    stream      TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    UNIQUE (stream, seq)
) STRICT;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
