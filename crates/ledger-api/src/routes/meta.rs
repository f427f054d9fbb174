//! `GET /metrics` (Prometheus text) and `GET /openapi.json` (this API's OpenAPI document).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use subtle::ConstantTimeEq;

use crate::auth::{authenticate, bearer_token, sha256};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::projection_samples;
use crate::state::AppState;

/// The rendered OpenAPI document, shared with the handler that serves it.
#[derive(Clone)]
pub(crate) struct OpenApiJson(pub Arc<String>);

/// Prometheus metrics: requests by route, method and status, append latency, conflicts,
/// replays, each projection's checkpoint, lag, state and rebuild progress, and the build.
///
/// Open unless the server was started with a metrics token: then it needs
/// `Authorization: Bearer <metrics token>` or the admin token.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "`unauthorized`: a metrics token is configured and this request has neither it nor the admin token", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant token", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(hash) = &state.metrics_hash {
        let token = bearer_token(&headers)?;
        if !bool::from(sha256(token.as_bytes()).ct_eq(hash)) {
            authenticate(&state, token).await?.0.require_admin()?;
        }
    }
    let projections = match &state.projector {
        Some(projector) => projection_samples(projector, state.store.as_ref(), (state.clock)())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "metrics: the projections' status could not be read");
                Vec::new()
            }),
        None => Vec::new(),
    };
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render_with(&projections),
    ))
}

/// This API's OpenAPI 3 document, generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_string(),
    )
}
