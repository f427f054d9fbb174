//! `GET /healthz` (the process is up) and `GET /readyz` (the database is reachable and current).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use ledger_core::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers and its schema is the one this server needs.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "`unavailable` (the database does not answer), `schema_mismatch` (run `ledger migrate`) or `not_ready`", body = ErrorBody),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, (state.ready)()).await {
        Ok(Ok(())) => Ok(Json(Health { status: "ready" })),
        Ok(Err(e @ (StoreError::SchemaMismatch { .. } | StoreError::Unavailable { .. }))) => {
            Err(e.into())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "readiness probe failed");
            Err(ApiError::new(
                "not_ready",
                "the database did not answer the readiness probe; the details are in the server log",
            ))
        }
        Err(_) => Err(StoreError::unavailable("readiness probe timed out").into()),
    }
}
