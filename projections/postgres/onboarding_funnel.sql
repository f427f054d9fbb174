-- onboarding_funnel: per UTC day of event time (each event's own time, never now()), how many
-- tenants registered; how many reached each phase for the first time by a real step (the
-- `reached_*` columns, and `completions` for COMPLETED: a re-completion never counts twice,
-- and a completion after a backfilled one does not count); how many backfills moved a tenant's
-- phase forward (`backfilled`: a backfill is no progress, and the phases it moved a tenant past
-- never count as arrivals for it); and how long each counted completion took from the tenant's
-- first registration: under 1 h, 1 h to under 24 h, 24 h to under 7 days, 7 days or more.
-- onboarding_funnel_tenants: the funnel's memory of each tenant: when it first registered and
-- the furthest phase it reached (a backfill included).
-- In each CREATE TABLE, `{table}` is the table named in the comment above it, or that name with
-- `_rebuild` while a rebuild fills a fresh copy.
-- version: 1

-- onboarding_funnel: one row per day with anything counted; `day` is `YYYY-MM-DD`.
CREATE TABLE {table} (
    day                           text COLLATE "C" NOT NULL,
    registrations                 bigint NOT NULL,
    reached_payment_verified      bigint NOT NULL,
    reached_organization_created  bigint NOT NULL,
    reached_workspace_provisioned bigint NOT NULL,
    reached_api_key_issued        bigint NOT NULL,
    completions                   bigint NOT NULL,
    backfilled                    bigint NOT NULL,
    completed_within_1h           bigint NOT NULL,
    completed_1h_to_1d            bigint NOT NULL,
    completed_1d_to_7d            bigint NOT NULL,
    completed_after_7d            bigint NOT NULL,
    CONSTRAINT {table}_pkey PRIMARY KEY (day)
);

-- onboarding_funnel_tenants: one row per tenant with a registration, a step or a backfill.
CREATE TABLE {table} (
    tenant_id           text COLLATE "C" NOT NULL,
    first_registered_at timestamptz,
    furthest_phase      text COLLATE "C" NOT NULL,
    CONSTRAINT {table}_pkey PRIMARY KEY (tenant_id)
);
