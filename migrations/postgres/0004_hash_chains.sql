-- Each stream is a hash chain: `hash` is SHA-256 over the previous event's hash of the same
-- stream (`prev_hash`; 32 zero bytes for seq 1) and the event's canonical encoding (README,
-- "Integrity"). The ledger computes both in the append. Events written before this migration
-- get theirs from `ledger migrate`, which fills each stream's chain in seq order right after
-- this file runs; until then they are NULL.
-- No CHECK on their length: it cost a tenth of the append rate in measurements, and
-- `ledger verify` reports a link that is not 32 bytes as a missing hash.
ALTER TABLE events
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;

-- Deleting stays refused for every statement; updating is refused row by row, except filling
-- in the missing links of an event once, leaving everything else as it was.
DROP TRIGGER events_append_only ON events;

CREATE TRIGGER events_append_only
    BEFORE DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

CREATE FUNCTION events_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.hash IS NULL AND OLD.prev_hash IS NULL
        AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
        AND (NEW.position, NEW.tx_id, NEW.event_id, NEW.stream, NEW.seq, NEW.event_type,
             NEW.data, NEW.metadata, NEW.recorded_at)
            IS NOT DISTINCT FROM
            (OLD.position, OLD.tx_id, OLD.event_id, OLD.stream, OLD.seq, OLD.event_type,
             OLD.data, OLD.metadata, OLD.recorded_at)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events are append-only: UPDATE on events is refused'
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_update_refused
    BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_update();

-- The events still to chain (none once `ledger migrate` has filled them in): lets a migration
-- find them without scanning the log.
CREATE INDEX events_unchained ON events (position) WHERE hash IS NULL;
