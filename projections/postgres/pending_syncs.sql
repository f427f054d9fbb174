-- pending_syncs: the compensation queue, one row per tenant and downstream target:
-- `pending_sync` (failed, awaiting a retry), `synced` or `failed` (given up).
-- `{table}` is `pending_syncs`, or `pending_syncs_rebuild` while a rebuild fills a fresh copy.
-- version: 1
CREATE TABLE {table} (
    tenant_id       text COLLATE "C" NOT NULL,
    target          text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL,
    attempts        bigint NOT NULL,
    retry_count     bigint NOT NULL,
    last_error      text COLLATE "C",
    first_failed_at timestamptz,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT {table}_pkey PRIMARY KEY (tenant_id, target)
);
CREATE INDEX {table}_status_idx ON {table} (status, tenant_id, target);
