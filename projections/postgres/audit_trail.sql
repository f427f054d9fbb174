-- audit_trail: one row per event of the log, with its tenant, who acted and in which request,
-- indexed for audit queries (`GET /v1/audit/events`, `ledger audit events`).
-- `{table}` is `audit_trail`, or `audit_trail_rebuild` while a rebuild fills a fresh copy.
-- version: 1
CREATE TABLE {table} (
    recorded_us    bigint NOT NULL,
    position       bigint NOT NULL,
    stream         text COLLATE "C" NOT NULL,
    category       text COLLATE "C" NOT NULL,
    seq            bigint NOT NULL,
    event_type     text COLLATE "C" NOT NULL,
    tenant         text COLLATE "C",
    actor          text COLLATE "C",
    on_behalf_of   text COLLATE "C",
    correlation_id text COLLATE "C",
    request_id     text COLLATE "C",
    CONSTRAINT {table}_pkey PRIMARY KEY (recorded_us, position)
);
CREATE INDEX {table}_tenant_idx ON {table} (tenant, recorded_us, position);
CREATE INDEX {table}_stream_idx ON {table} (stream, recorded_us, position);
CREATE INDEX {table}_category_idx ON {table} (category, recorded_us, position);
CREATE INDEX {table}_type_idx ON {table} (event_type, recorded_us, position);
CREATE INDEX {table}_actor_idx ON {table} (actor, recorded_us, position);
CREATE INDEX {table}_on_behalf_of_idx ON {table} (on_behalf_of, recorded_us, position);
CREATE INDEX {table}_correlation_idx ON {table} (correlation_id, recorded_us, position);
CREATE INDEX {table}_request_idx ON {table} (request_id, recorded_us, position);
