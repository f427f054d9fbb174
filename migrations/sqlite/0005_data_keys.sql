-- The key table: one 256-bit data key per subject (a tenant id), with which the ledger seals
-- that subject's personal fields. Erasing a subject destroys its key: `key` becomes NULL and
-- `erased_at` records when, and the row stays as a tombstone so that no key is ever made for
-- the subject again (a subject erased before it had a key gets a tombstone too). It is the
-- ledger's only mutable table: no trigger refuses changes to it.
-- A row holds either a key of 32 bytes or the time it was erased, never both, never neither.
-- `created_at` and `erased_at` are UTC RFC 3339 text with microseconds, set by the ledger.
CREATE TABLE ledger_keys (
    subject    TEXT NOT NULL PRIMARY KEY,
    key        BLOB,
    created_at TEXT NOT NULL,
    erased_at  TEXT,
    CONSTRAINT ledger_keys_key_or_erased CHECK ((key IS NULL) <> (erased_at IS NULL)),
    CONSTRAINT ledger_keys_key_length CHECK (key IS NULL OR length(key) = 32)
) STRICT;
