-- The event log: one row per event, append-only.
--
-- `position` is the event's place in the global log; `tx_id` is the writing transaction, so
-- readers can go in commit-safe order (tx_id, position) and never skip a late commit.
-- `(stream, seq)` is unique: a concurrent writer that computed the same head loses there.
CREATE TABLE events (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id    uuid NOT NULL,
    stream      text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL CHECK (seq > 0),
    event_type  text NOT NULL,
    data        jsonb NOT NULL,
    metadata    jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_seq_key UNIQUE (stream, seq)
);

-- The global log's read order; category and type filters run over this scan.
CREATE INDEX events_tx_id_position_idx ON events (tx_id, position);

-- Events are never changed or removed once written.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % on events is refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
