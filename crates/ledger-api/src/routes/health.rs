//! `GET /healthz` (the process is up) and `GET /readyz` (the database is reachable, current
//! and takes writes).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use ledger_core::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Code, ErrorBody};
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

/// Readiness: the database answers, its schema is the one this server needs, and writes are
/// not known to fail.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "`unavailable` (the database does not answer, or cannot be written: the message says why, e.g. disk full or read-only), `schema_mismatch` (run `ledger migrate`) or `not_ready`", body = ErrorBody),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let check = async {
        match (state.ready)().await {
            Ok(()) => {}
            Err(e @ (StoreError::SchemaMismatch { .. } | StoreError::Unavailable { .. })) => {
                return Err(e.into());
            }
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "readiness probe failed"
                );
                return Err(ApiError::new(
                    Code::NotReady,
                    "the database did not answer the readiness probe; the details are in the server log",
                ));
            }
        }
        match state.store.write_fault().await {
            None => Ok(Json(Health { status: "ready" })),
            Some(reason) => {
                tracing::warn!(%reason, "not ready: the database cannot be written");
                Err(ApiError::new(
                    Code::Unavailable,
                    format!("the database cannot be written: {reason}"),
                ))
            }
        }
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(answer) => answer,
        Err(_) => Err(StoreError::unavailable("readiness probe timed out").into()),
    }
}
