-- onboarding_locks: the last onboarding lock of each tenant, released or not. A lock is active
-- when it is not released and `expires_at` is after the time of the query (times are RFC 3339
-- UTC text with microseconds, so they compare as text).
-- `{table}` is `onboarding_locks`, or `onboarding_locks_rebuild` while a rebuild fills a fresh copy.
-- version: 1
CREATE TABLE {table} (
    tenant_id      TEXT NOT NULL PRIMARY KEY,
    holder         TEXT NOT NULL,
    acquired_at    TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    released_at    TEXT,
    release_reason TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX {table}_unreleased_idx ON {table} (tenant_id) WHERE released_at IS NULL;
