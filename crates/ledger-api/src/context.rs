//! Per-request context (request, correlation and causation ids) and the middleware that sets
//! it, echoes `X-Request-Id`, logs the request and counts it in the metrics.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::Writer;
use crate::error::{ApiError, Code, ErrorCode};
use crate::input::{MAX_HEADER_ID_LEN, is_header_id};
use crate::metrics::{count_conflicts, method_label};
use crate::state::AppState;

/// `X-Request-Id`: taken from the request or generated, echoed on the response.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Correlation-Id`: recorded in the metadata of appended events when sent.
pub static CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// `X-Causation-Id`: recorded in the metadata of appended events when sent.
pub static CAUSATION_ID: HeaderName = HeaderName::from_static("x-causation-id");

/// Ids that tie a request's events to the request and to other messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    /// The request's id.
    pub request_id: String,
    /// `X-Correlation-Id`, when sent.
    pub correlation_id: Option<String>,
    /// `X-Causation-Id`, when sent.
    pub causation_id: Option<String>,
}

impl RequestContext {
    /// The metadata every event appended by `writer` in this request carries: `actor`
    /// (`{role, token, token_id, tenant?, on_behalf_of?}`) and the request's ids.
    pub fn metadata(&self, writer: &Writer) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("actor".into(), writer.actor.to_json());
        m.insert("request_id".into(), Value::String(self.request_id.clone()));
        if let Some(c) = &self.correlation_id {
            m.insert("correlation_id".into(), Value::String(c.clone()));
        }
        if let Some(c) = &self.causation_id {
            m.insert("causation_id".into(), Value::String(c.clone()));
        }
        m
    }

    /// The ids of a request with these headers (a fresh request id when it sent none).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let request_id = header_id(headers, &REQUEST_ID)
            .ok()
            .flatten()
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        Ok(Self {
            request_id,
            correlation_id: header_id(headers, &CORRELATION_ID)?,
            causation_id: header_id(headers, &CAUSATION_ID)?,
        })
    }
}

/// An id header: 1 to 200 visible ASCII characters, or absent.
fn header_id(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if !is_header_id(text) {
        return Err(ApiError::new(
            Code::InvalidHeader,
            format!("{name} must be 1 to {MAX_HEADER_ID_LEN} visible ASCII characters"),
        ));
    }
    Ok(Some(text.to_string()))
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<RequestContext>() {
            Some(ctx) => Ok(ctx.clone()),
            None => RequestContext::from_headers(&parts.headers),
        }
    }
}

/// Middleware: sets the [`RequestContext`], echoes `X-Request-Id`, logs and counts the request.
pub(crate) async fn track(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(request.method());
    let (mut response, request_id) = match RequestContext::from_headers(request.headers()) {
        Ok(ctx) => {
            let id = ctx.request_id.clone();
            request.extensions_mut().insert(ctx);
            // Every line logged while the handler runs (its errors included) names the request.
            let span = tracing::error_span!("request", request_id = %id);
            let response = count_conflicts(&state.metrics, next.run(request)).instrument(span);
            (response.await, id)
        }
        Err(e) => (e.into_response(), Uuid::now_v7().to_string()),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let status = response.status();
    state.metrics.request(&route, method, status.as_u16());
    let code = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0.as_str());
    // Milliseconds to the microsecond, printed without float noise.
    let took_ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0);
    if status.is_server_error() {
        tracing::warn!(%method, %route, status = status.as_u16(), code, request_id, %took_ms, "request");
    } else {
        tracing::info!(%method, %route, status = status.as_u16(), code, request_id, %took_ms, "request");
    }
    response
}
