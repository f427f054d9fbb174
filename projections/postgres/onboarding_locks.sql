-- onboarding_locks: the last onboarding lock of each tenant, released or not. A lock is active
-- when it is not released and `expires_at` is after the time of the query.
-- `{table}` is `onboarding_locks`, or `onboarding_locks_rebuild` while a rebuild fills a fresh copy.
-- version: 1
CREATE TABLE {table} (
    tenant_id      text COLLATE "C" NOT NULL,
    holder         text COLLATE "C" NOT NULL,
    acquired_at    timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    released_at    timestamptz,
    release_reason text COLLATE "C",
    CONSTRAINT {table}_pkey PRIMARY KEY (tenant_id)
);
CREATE INDEX {table}_unreleased_idx ON {table} (tenant_id) WHERE released_at IS NULL;
