//! The OpenAPI document's frame (info, security, tags) and the documented command bodies.
//!
//! The paths themselves come from the `#[utoipa::path]` annotations of the handlers, collected
//! by the router in [`crate::app`], so the document lists exactly the routes that are served.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::views::{PhaseSchema, StageSchema};

/// The document's frame; [`crate::app`] adds every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Onboarding ledger",
        description = "HTTP command API of the onboarding ledger: register tenants, run onboarding commands, append to and read streams.\n\nEvery error is `{\"error\": code, \"message\": text, ...}` with a stable snake_case code. Authenticate with `Authorization: Bearer <token>`: the admin token, or a tenant token from `POST /v1/tenants/{id}/tokens` that reaches only its tenant."
    ),
    modifiers(&BearerAuth),
    components(schemas(CommandBody)),
    tags(
        (name = "tenants", description = "Registering tenants, reading their onboarding, issuing their tokens"),
        (name = "commands", description = "Onboarding commands, decided against the tenant's stream"),
        (name = "queries", description = "Read models (projections), paged; `min_position` waits for a write to be applied"),
        (name = "projections", description = "Status and online rebuilds of the read models"),
        (name = "streams", description = "Appending to and reading any stream, for writers with their own aggregates"),
        (name = "health", description = "Liveness and readiness"),
        (name = "meta", description = "Metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token, or a tenant token (`lt_...`) that reaches only its tenant",
                    ))
                    .build(),
            ),
        );
    }
}

/// The body of `POST /v1/tenants/{id}/commands/{name}`: the fields of the named command, plus
/// an optional `expected_seq`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum CommandBody {
    /// `verify-payment`.
    VerifyPayment(VerifyPaymentBody),
    /// `acquire-lock`.
    AcquireLock(AcquireLockBody),
    /// `release-lock`.
    ReleaseLock(ReleaseLockBody),
    /// `create-organization`, `provision-workspace`, `issue-api-key`, `complete-onboarding`.
    Step(StepBody),
    /// `record-step-failure`.
    RecordStepFailure(RecordStepFailureBody),
    /// `record-sync-failure`.
    RecordSyncFailure(RecordSyncFailureBody),
    /// `record-sync-retry`, `record-sync-success`.
    Sync(SyncBody),
    /// `abandon-sync`.
    AbandonSync(AbandonSyncBody),
    /// `backfill-phase`.
    BackfillPhase(BackfillPhaseBody),
}

/// `verify-payment`: record a paid checkout.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct VerifyPaymentBody {
    /// The payment provider's checkout session.
    checkout_session_id: String,
    /// The caller, checked against the onboarding lock.
    holder: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `acquire-lock`: take or renew the onboarding lock.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct AcquireLockBody {
    /// Who takes it (a tab, a job).
    holder: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `release-lock`: give the lock up.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReleaseLockBody {
    /// Who holds it.
    holder: String,
    /// Why (default `released`).
    reason: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `create-organization`, `provision-workspace`, `issue-api-key` (the server generates the key
/// and returns it once) and `complete-onboarding`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct StepBody {
    /// The caller, checked against the onboarding lock.
    holder: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `record-step-failure`: a stage failed and may be retried.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct RecordStepFailureBody {
    /// The stage that failed.
    stage: StageSchema,
    /// A machine-readable failure code.
    code: String,
    /// The caller, checked against the onboarding lock.
    holder: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `record-sync-failure`: a downstream sync failed and awaits compensation.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct RecordSyncFailureBody {
    /// The downstream system.
    target: String,
    /// The error text.
    last_error: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `record-sync-retry` and `record-sync-success`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct SyncBody {
    /// The downstream system.
    target: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `abandon-sync`: give up on a failed sync.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct AbandonSyncBody {
    /// The downstream system.
    target: String,
    /// Why.
    reason: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `backfill-phase`: record a phase reached outside the normal flow.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct BackfillPhaseBody {
    /// The phase the tenant is known to have reached.
    phase: PhaseSchema,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}
