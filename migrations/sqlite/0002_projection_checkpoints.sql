-- Where each projection (read model) stands: one row per projection and copy (`live`, or
-- `rebuild` while a rebuild fills fresh tables). A batch of events and its checkpoint commit in
-- one transaction, and only if the checkpoint is still at the `generation` and `position` the
-- applier read, so no event is applied twice or skipped, whoever else is applying.
-- `updated_at` is RFC 3339 UTC text with microseconds.
CREATE TABLE projection_checkpoints (
    name       TEXT    NOT NULL,
    slot       TEXT    NOT NULL CHECK (slot IN ('live', 'rebuild')),
    version    INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    owner      TEXT,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (name, slot)
) STRICT;
