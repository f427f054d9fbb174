//! The request timeout (tower's `Timeout`) and the request-body timeout (tower-http's
//! `RequestBodyTimeout`), both answered as `{error, message}` bodies.

use std::convert::Infallible;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::Route;
use tower::{BoxError, Layer, Service, ServiceBuilder};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError};

use crate::error::{ApiError, Code};
use crate::state::ApiConfig;

/// The layer that bounds every request: its answer within `request_timeout` (then 503
/// `request_timeout`; a streamed body such as an event stream is not cut, only the wait for its
/// start), and each pause in its body within `body_timeout` (then 408 `body_timeout`).
pub(crate) fn layer(
    config: &ApiConfig,
) -> impl Layer<
    Route,
    Service: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
                 + Clone
                 + Send
                 + Sync
                 + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let limit = config.request_timeout;
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |_: BoxError| async move {
            request_timed_out(limit)
        }))
        .timeout(limit)
        .layer(RequestBodyTimeoutLayer::new(config.body_timeout))
}

/// 503 `request_timeout`: the request was not answered within `limit`.
fn request_timed_out(limit: Duration) -> ApiError {
    ApiError::new(
        Code::RequestTimeout,
        format!(
            "the server did not answer within {} s and gave up; the request may or may not have taken effect: retry it (commands with the same Idempotency-Key)",
            limit.as_secs_f64()
        ),
    )
}

/// 408 `body_timeout` when `rejection` comes from a request body that stopped arriving.
pub(crate) fn body_timed_out(rejection: &BytesRejection) -> Option<ApiError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if e.is::<TimeoutError>() {
            return Some(ApiError::new(
                Code::BodyTimeout,
                "the request body stopped arriving before it was complete; send the whole body without pausing",
            ));
        }
        cause = e.source();
    }
    None
}
