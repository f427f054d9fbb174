-- tenant_phase: one row per tenant: its registration, the furthest phase reached and when each
-- of the five stages completed. Times are event times, never now().
-- `{table}` is `tenant_phase`, or `tenant_phase_rebuild` while a rebuild fills a fresh copy.
-- version: 1
CREATE TABLE {table} (
    tenant_id                text COLLATE "C" NOT NULL,
    slug                     text COLLATE "C",
    name                     text COLLATE "C",
    phase                    text COLLATE "C" NOT NULL,
    verifying_payment_at     timestamptz,
    creating_organization_at timestamptz,
    setting_up_workspace_at  timestamptz,
    generating_api_key_at    timestamptz,
    finalizing_at            timestamptz,
    completed_at             timestamptz,
    last_seq                 bigint NOT NULL,
    updated_at               timestamptz NOT NULL,
    CONSTRAINT {table}_pkey PRIMARY KEY (tenant_id)
);
CREATE INDEX {table}_phase_idx ON {table} (phase, tenant_id);
