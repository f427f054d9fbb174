//! The web console under `/ui`: server-rendered pages (maud) with a little plain JavaScript for
//! live updates, its assets embedded in the binary.
//!
//! Two audiences: the person onboarding, who opens a signed, expiring progress link and watches
//! their five stages complete; and operators (admin and auditor tokens; a tenant token sees its
//! own tenant), who sign in once with a token kept sealed in a session cookie. Every page reads
//! through the same handlers as the JSON API, and every action writes through the same command
//! path, so the console can do nothing the API would refuse.

mod assets;
mod operations;
mod page;
mod progress;
pub(crate) mod secret;
mod session;
mod signin;
mod tenants;

pub(crate) mod link;

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{ApiError, Code, ErrorCode};
use crate::state::AppState;

pub(crate) use secret::Secret;
pub(crate) use session::Session;

/// The console's pages, its actions and its assets.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(signin::show))
        .route("/ui/", get(signin::show))
        .route("/ui/sign-in", post(signin::sign_in))
        .route("/ui/sign-out", post(signin::sign_out))
        .route("/ui/progress/{id}", get(progress::page))
        .route("/ui/progress/{id}/events", get(progress::events))
        .route("/ui/assets/{file}", get(assets::serve))
        .merge(tenants::routes())
        .merge(operations::routes())
        .layer(axum::middleware::map_response(protect))
}

/// Headers every console answer carries: no framing, no sniffing, no referrer (a progress
/// link's signature must not leak to other sites), scripts and styles from the console only,
/// and pages never cached.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What a console page or action can fail with.
#[derive(Debug)]
pub(crate) enum ConsoleError {
    /// No valid session: go to the sign-in page.
    SignIn,
    /// Refused or failed as the API would refuse or fail it.
    Api(ApiError),
}

impl ConsoleError {
    /// 403 `csrf_invalid`.
    pub(crate) fn csrf() -> Self {
        ConsoleError::Api(ApiError::new(
            Code::CsrfInvalid,
            "this form is out of date or did not come from this console: reload the page and try again",
        ))
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<ledger_core::StoreError> for ConsoleError {
    fn from(e: ledger_core::StoreError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::SignIn => (StatusCode::SEE_OTHER, [(LOCATION, "/ui")]).into_response(),
            ConsoleError::Api(e) => {
                let code = e.code();
                let status = code.status();
                let body = e.body();
                let mut response =
                    (status, page::error_page(status, code, &body.message)).into_response();
                response.extensions_mut().insert(ErrorCode(code));
                response
            }
        }
    }
}

/// A `303 See Other` to `to`.
pub(crate) fn see_other(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/ui"));
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}
