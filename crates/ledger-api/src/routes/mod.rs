//! The routes, one module per resource, and the router that serves and documents them.

pub(crate) mod appends;
pub mod audit;
pub(crate) mod chains;
pub(crate) mod commands;
pub mod erase;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod history;
pub(crate) mod live;
pub(crate) mod meta;
pub(crate) mod progress;
pub(crate) mod progress_link;
pub(crate) mod projections;
pub(crate) mod queries;
pub(crate) mod streams;
pub(crate) mod subscriptions;
pub(crate) mod tenants;
pub(crate) mod tokens;

use std::any::Any;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::context::track;
use crate::error::{ApiError, Code};
use crate::openapi::{ApiDoc, contract};
use crate::quote::quote;
use crate::state::AppState;
use crate::timeouts;

/// Every route with its OpenAPI description.
pub(crate) fn documented() -> (Router<AppState>, serde_json::Value) {
    let (router, doc) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(tenants::register, queries::list_tenants))
        .routes(routes!(tenants::get_tenant))
        .routes(routes!(erase::erase_tenant))
        .routes(routes!(history::timeline))
        .routes(routes!(tokens::issue_token))
        .routes(routes!(commands::run_command))
        .routes(routes!(streams::append, streams::read))
        .routes(routes!(chains::stream_head))
        .routes(routes!(events::read_log, appends::append_many))
        .routes(routes!(live::live))
        .routes(routes!(audit::audit_events))
        .routes(routes!(subscriptions::define))
        .routes(routes!(subscriptions::events))
        .routes(routes!(subscriptions::ack))
        .routes(routes!(progress::progress))
        .routes(routes!(progress_link::progress_link))
        .routes(routes!(queries::list_locks))
        .routes(routes!(queries::list_pending_syncs))
        .routes(routes!(queries::funnel))
        .routes(routes!(projections::list_projections))
        .routes(routes!(projections::get_projection))
        .routes(routes!(projections::rebuild))
        .split_for_parts();
    (router, contract(doc))
}

/// The HTTP API over `state`: every route, JSON errors for unknown routes, methods, panics and
/// oversized bodies, request ids and metrics.
pub fn app(state: AppState) -> Router {
    let (router, doc) = documented();
    let json = serde_json::to_string_pretty(&doc).expect("the OpenAPI document serializes");
    router
        .merge(crate::console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(meta::OpenApiJson(Arc::new(json))))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(timeouts::layer(&state.config))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Gives an error answer that has no JSON body (one raised by the framework or a layer rather
/// than a handler) the `{error, message}` body of every other error, keeping its status and
/// headers.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    // JSON errors, and the console's HTML error pages, keep their bodies.
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (body_parts, body) = ApiError::of_status(status).into_response().into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.extend(body_parts.headers);
    parts.extensions.extend(body_parts.extensions);
    Response::from_parts(parts, body)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!(
            "there is no route {}; GET /openapi.json lists them",
            quote(uri.path())
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; GET /openapi.json lists the routes",
            quote(method.as_str()),
            quote(uri.path())
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

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::StatusCode;

    use super::*;

    #[tokio::test]
    async fn bare_error_answers_get_the_json_shape() {
        for status in [
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_GATEWAY,
        ] {
            let bare = Response::builder()
                .status(status)
                .header("x-kept", "1")
                .header(CONTENT_LENGTH, "0")
                .body(Body::empty())
                .unwrap();
            let answer = json_errors(bare).await;
            assert_eq!(answer.status(), status);
            assert_eq!(answer.headers()["x-kept"], "1");
            assert_eq!(answer.headers()[CONTENT_TYPE], "application/json");
            let body = to_bytes(answer.into_body(), 4096).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                body["error"].as_str().is_some_and(|c| !c.is_empty()),
                "{body}"
            );
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{body}"
            );
        }
        let ok = json_errors(Response::new(Body::from("fine"))).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
