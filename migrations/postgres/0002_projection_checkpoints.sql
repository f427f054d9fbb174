-- Where each projection (read model) stands: one row per projection and copy (`live`, or
-- `rebuild` while a rebuild fills fresh tables). A batch of events and its checkpoint commit in
-- one transaction, and only if the checkpoint is still at the `generation` and `position` the
-- applier read, so no event is applied twice or skipped, whoever else is applying.
CREATE TABLE projection_checkpoints (
    name       text NOT NULL,
    slot       text NOT NULL CHECK (slot IN ('live', 'rebuild')),
    version    integer NOT NULL,
    generation bigint NOT NULL,
    position   bigint NOT NULL,
    events     bigint NOT NULL,
    owner      text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, slot)
);

-- Wakes projection runners (LISTEN ledger_events) when events commit: once per statement, and
-- PostgreSQL folds the identical notifications of one transaction into one.
CREATE FUNCTION events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ledger_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
