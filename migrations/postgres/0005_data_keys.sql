-- The key table: one 256-bit data key per subject (a tenant id), with which the ledger seals
-- that subject's personal fields. Erasing a subject destroys its key: `key` becomes NULL and
-- `erased_at` records when, and the row stays as a tombstone so that no key is ever made for
-- the subject again (a subject erased before it had a key gets a tombstone too). It is the
-- ledger's only mutable table: no trigger refuses changes to it.
-- A row holds either a key of 32 bytes or the time it was erased, never both, never neither.
-- `subject` sorts bytewise ("C"), as `ledger export --with-keys` lists the rows.
CREATE TABLE ledger_keys (
    subject    text COLLATE "C" PRIMARY KEY,
    key        bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    CONSTRAINT ledger_keys_key_or_erased CHECK ((key IS NULL) <> (erased_at IS NULL)),
    CONSTRAINT ledger_keys_key_length CHECK (key IS NULL OR octet_length(key) = 32)
);
