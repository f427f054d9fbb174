-- pending_syncs: the compensation queue, one row per tenant and downstream target:
-- `pending_sync` (failed, awaiting a retry), `synced` or `failed` (given up).
-- `{table}` is `pending_syncs`, or `pending_syncs_rebuild` while a rebuild fills a fresh copy.
-- version: 1
CREATE TABLE {table} (
    tenant_id       TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    retry_count     INTEGER NOT NULL,
    last_error      TEXT,
    first_failed_at TEXT,
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, target)
) STRICT, WITHOUT ROWID;
CREATE INDEX {table}_status_idx ON {table} (status, tenant_id, target);
