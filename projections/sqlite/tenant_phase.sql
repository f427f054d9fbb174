-- tenant_phase: one row per tenant: its registration, the furthest phase reached and when each
-- of the five stages completed. Times are event times (RFC 3339 UTC text with microseconds, so
-- they sort as text), never now().
-- `{table}` is `tenant_phase`, or `tenant_phase_rebuild` while a rebuild fills a fresh copy.
-- version: 1
CREATE TABLE {table} (
    tenant_id                TEXT    NOT NULL PRIMARY KEY,
    slug                     TEXT,
    name                     TEXT,
    phase                    TEXT    NOT NULL,
    verifying_payment_at     TEXT,
    creating_organization_at TEXT,
    setting_up_workspace_at  TEXT,
    generating_api_key_at    TEXT,
    finalizing_at            TEXT,
    completed_at             TEXT,
    last_seq                 INTEGER NOT NULL,
    updated_at               TEXT    NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX {table}_phase_idx ON {table} (phase, tenant_id);
