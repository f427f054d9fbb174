//! The routes, one module per resource, and the router that serves and documents them.

pub(crate) mod commands;
pub(crate) mod health;
pub(crate) mod meta;
pub(crate) mod progress;
pub(crate) mod projections;
pub(crate) mod queries;
pub(crate) mod streams;
pub(crate) mod tenants;
pub(crate) mod tokens;

use std::any::Any;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::context::track;
use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;
use crate::timeouts;

/// Every route with its OpenAPI description.
pub(crate) fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(tenants::register, queries::list_tenants))
        .routes(routes!(tenants::get_tenant))
        .routes(routes!(tokens::issue_token))
        .routes(routes!(commands::run_command))
        .routes(routes!(streams::append, streams::read))
        .routes(routes!(progress::progress))
        .routes(routes!(queries::list_locks))
        .routes(routes!(queries::list_pending_syncs))
        .routes(routes!(projections::list_projections))
        .routes(routes!(projections::get_projection))
        .routes(routes!(projections::rebuild))
        .split_for_parts()
}

/// The HTTP API over `state`: every route, JSON errors for unknown routes, methods, panics and
/// oversized bodies, request ids and metrics.
pub fn app(state: AppState) -> Router {
    let (router, doc) = documented();
    let json = doc
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(meta::OpenApiJson(Arc::new(json))))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(timeouts::layer(&state.config))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        "not_found",
        format!(
            "there is no route {}; GET /openapi.json lists them",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; GET /openapi.json lists the routes",
            uri.path()
        ),
    )
}

fn panicked(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a handler panicked".to_string());
    ApiError::internal(format!("a handler panicked: {detail}")).into_response()
}
