//! `ApiError`: every failure of a request, mapped to a status and a `{error, message, ...}`
//! body in one place.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_commands::ExecuteError;
use ledger_core::{Conflict, StoreError};
use ledger_domain::DomainError;
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::metrics::ConflictOn;
use crate::quote::{bound_quotes, excerpt, quote};

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code, e.g. `conflict`, `lock_held`, `unauthorized`.
    #[schema(example = "conflict")]
    pub error: String,
    /// What went wrong and what to do about it, for a person.
    pub message: String,
    /// Details that depend on the code (`current_seq`, `holder`, `phase`, ...).
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub details: Map<String, Value>,
}

/// Marks an error response in its extensions, for the request log and the metrics.
#[derive(Clone, Debug)]
pub(crate) struct ErrorCode(pub &'static str);

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command executor refused or failed.
    #[error(transparent)]
    Execute(ExecuteError),
    /// The domain refused a command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The request itself is refused (authentication, malformed input, unknown route, ...).
    #[error("{message}")]
    Request {
        /// The stable code; its status comes from [`status_of`].
        code: &'static str,
        /// For a person.
        message: String,
        /// Extra fields of the body.
        details: Map<String, Value>,
    },
}

impl From<ExecuteError> for ApiError {
    fn from(e: ExecuteError) -> Self {
        match e {
            ExecuteError::Domain(d) => ApiError::Domain(d),
            ExecuteError::Store(s) => ApiError::Store(s),
            other => ApiError::Execute(other),
        }
    }
}

/// The HTTP status of each error code: the one place codes become statuses.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid_request"
        | "invalid_json"
        | "invalid_tenant_id"
        | "invalid_path"
        | "invalid_query"
        | "invalid_header"
        | "invalid_idempotency_key"
        | "invalid_if_match"
        | "conflicting_expected_seq" => StatusCode::BAD_REQUEST,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "not_found" | "tenant_not_found" | "unknown_command" | "unknown_projection" => {
            StatusCode::NOT_FOUND
        }
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "conflict"
        | "lock_held"
        | "invalid_transition"
        | "slug_taken"
        | "tenant_exists"
        | "sync_not_pending"
        | "position_not_reached" => StatusCode::CONFLICT,
        "body_timeout" => StatusCode::REQUEST_TIMEOUT,
        "payload_too_large" | "event_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "uri_too_long" => StatusCode::URI_TOO_LONG,
        "headers_too_large" => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "invalid_body"
        | "invalid_slug"
        | "invalid_command"
        | "invalid_event"
        | "invalid_stream_name"
        | "empty_batch"
        | "invalid_metadata"
        | "invalid_input"
        | "unknown_position"
        | "event_id_reused"
        | "idempotency_key_reused" => StatusCode::UNPROCESSABLE_ENTITY,
        "expected_seq_required" => StatusCode::PRECONDITION_REQUIRED,
        "unavailable"
        | "schema_mismatch"
        | "not_ready"
        | "projection_behind"
        | "projections_unavailable"
        | "request_timeout" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code of an answer raised without one (by the framework or the HTTP server), by its
/// status: [`status_of`] maps each back to that status.
pub(crate) fn code_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    }
}

/// The message of every 500: details go to the log only.
const INTERNAL_MESSAGE: &str = "the server failed to handle this request; the details are in its log under this request's X-Request-Id";
/// The `Retry-After` of every 503, in seconds.
const RETRY_AFTER_SECONDS: u64 = 1;
/// The message of a database that cannot be reached.
const UNAVAILABLE_MESSAGE: &str = "the database is unavailable right now; try again in a moment";

impl ApiError {
    /// An API-level error with the given code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Request {
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// The same error with one more body field.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        if let ApiError::Request { details, .. } = &mut self {
            details.insert(key.to_string(), json!(value));
        }
        self
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new("unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }

    /// 500 `internal`, logging `detail` (never sent to the client).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new("internal", INTERNAL_MESSAGE)
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Store(e) => e.code(),
            ApiError::Execute(e) => e.code(),
            ApiError::Domain(e) => e.code(),
            ApiError::Request { code, .. } => code,
        }
    }

    /// The status the code maps to.
    pub fn status(&self) -> StatusCode {
        status_of(self.code())
    }

    /// The error of an answer that came without a JSON body (from the framework or the HTTP
    /// server, before any handler ran), by its status.
    pub(crate) fn of_status(status: StatusCode) -> Self {
        let message = match status {
            StatusCode::BAD_REQUEST => {
                "the request is not HTTP this server can read: check the method, the URL (percent-encode any byte that is not ASCII) and the headers"
            }
            StatusCode::URI_TOO_LONG => {
                "the URL is longer than this server accepts; send long values in the request body"
            }
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                "the request headers are larger than this server accepts; send fewer or shorter headers"
            }
            StatusCode::NOT_FOUND => "there is no such route; GET /openapi.json lists them",
            StatusCode::METHOD_NOT_ALLOWED => {
                "this method is not allowed on this route; GET /openapi.json lists the routes"
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is over this server's size limit; send less per request"
            }
            s if s.is_server_error() => INTERNAL_MESSAGE,
            s => s.canonical_reason().unwrap_or("the request was refused"),
        };
        Self::new(code_of_status(status), message)
    }

    /// The response body (message and details), logging what must not reach the client.
    pub(crate) fn body(self) -> ErrorBody {
        let code = self.code();
        let mut details = Map::new();
        let message = match self {
            ApiError::Request {
                message,
                details: d,
                ..
            } => {
                details = d;
                message
            }
            ApiError::Store(StoreError::Conflict(c))
            | ApiError::Execute(ExecuteError::Conflict(c)) => {
                conflict_details(&c, &mut details);
                conflict_message(&c)
            }
            ApiError::Store(e) => store_message(e, &mut details),
            ApiError::Execute(ExecuteError::SlugTaken { slug }) => {
                let message = format!(
                    "slug {} is already taken by another tenant; choose another slug",
                    quote(&slug)
                );
                details.insert("slug".into(), json!(excerpt(&slug)));
                message
            }
            ApiError::Execute(ExecuteError::IdempotencyKeyReused { key }) => {
                let message = format!(
                    "Idempotency-Key {} was already used for a different request; send a new key with a new request",
                    quote(&key)
                );
                details.insert("idempotency_key".into(), json!(excerpt(&key)));
                message
            }
            ApiError::Execute(e @ ExecuteError::CorruptHistory { .. }) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "a tenant stream holds an unreadable event"
                );
                "this tenant's history holds an event this server cannot read; an operator should check the server log".to_string()
            }
            ApiError::Execute(e) => {
                if status_of(e.code()).is_server_error() {
                    tracing::error!(error = &e as &dyn std::error::Error, "command failed");
                    INTERNAL_MESSAGE.to_string()
                } else {
                    bound_quotes(&e.to_string()).into_owned()
                }
            }
            ApiError::Domain(e) => domain_message(e, &mut details),
        };
        ErrorBody {
            error: code.to_string(),
            message,
            details,
        }
    }
}

/// The conflict's fields, with the events the writer missed (at most
/// [`ledger_core::MAX_REPORTED_MISSED`], oldest first) so it can rebase without another read.
fn conflict_details(c: &Conflict, details: &mut Map<String, Value>) {
    let (missed, truncated) = c.reported_missed();
    details.insert("stream".into(), json!(excerpt(c.stream.as_str())));
    details.insert("expected_seq".into(), json!(c.expected));
    details.insert("current_seq".into(), json!(c.current_seq));
    details.insert("missed".into(), json!(missed));
    details.insert("missed_truncated".into(), json!(truncated));
}

fn conflict_message(c: &Conflict) -> String {
    let (missed, truncated) = c.reported_missed();
    let reread = if truncated {
        "read the stream again"
    } else {
        "fold the events in `missed`"
    };
    format!(
        "stream {} is at seq {}, not at the expected {}: someone else wrote first ({} event(s) in `missed`); {reread}, decide again and retry with expected_seq {}",
        excerpt(c.stream.as_str()),
        c.current_seq,
        c.expected,
        missed.len(),
        c.current_seq
    )
}

fn store_message(e: StoreError, details: &mut Map<String, Value>) -> String {
    match e {
        // The error itself, not its text: the log shows its whole cause chain.
        e @ StoreError::Unavailable { .. } => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "the database is unavailable"
            );
            UNAVAILABLE_MESSAGE.to_string()
        }
        e @ StoreError::Backend { .. } => {
            tracing::error!(error = &e as &dyn std::error::Error, "database error");
            INTERNAL_MESSAGE.to_string()
        }
        StoreError::EventTooLarge { index, size, limit } => {
            details.insert("index".into(), json!(index));
            details.insert("size".into(), json!(size));
            details.insert("limit".into(), json!(limit));
            format!(
                "event {index} is {size} bytes of data and metadata; the limit is {limit}: split it or store large payloads elsewhere"
            )
        }
        StoreError::InvalidMetadata { index } => {
            details.insert("index".into(), json!(index));
            format!(
                "event {index} has metadata that is not a JSON object; send an object or leave it out"
            )
        }
        StoreError::EventIdReused { event_id } => {
            details.insert("event_id".into(), json!(event_id));
            format!(
                "event id {event_id} was already used for a different event; give each new event a new id"
            )
        }
        StoreError::InvalidStreamName { name, reason } => {
            details.insert("stream".into(), json!(excerpt(&name)));
            format!("{} is not a valid stream name: {reason}", quote(&name))
        }
        other if other.code() == "internal" => {
            tracing::error!(error = %other, "store error");
            INTERNAL_MESSAGE.to_string()
        }
        other => bound_quotes(&other.to_string()).into_owned(),
    }
}

fn domain_message(e: DomainError, details: &mut Map<String, Value>) -> String {
    match &e {
        DomainError::TenantNotFound => {
            return "no tenant with this id is registered; register it with POST /v1/tenants"
                .to_string();
        }
        DomainError::TenantExists => {
            return "a tenant with this id is already registered".to_string();
        }
        DomainError::LockHeld { holder, expires_at } => {
            details.insert("holder".into(), json!(holder));
            details.insert("expires_at".into(), json!(expires_at));
        }
        DomainError::InvalidTransition { phase, command } => {
            details.insert("phase".into(), json!(phase));
            details.insert("command".into(), json!(command));
        }
        DomainError::SyncNotPending { target } => {
            details.insert("target".into(), json!(target));
        }
        _ => {}
    }
    bound_quotes(&e.to_string()).into_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = status_of(code);
        let conflict = match &self {
            ApiError::Store(StoreError::Conflict(c))
            | ApiError::Execute(ExecuteError::Conflict(c)) => {
                Some(ConflictOn(c.stream.category().to_string()))
            }
            _ => None,
        };
        let body = self.body();
        if status.is_server_error() {
            tracing::warn!(code, message = %body.message, "request failed");
        } else {
            tracing::debug!(code, message = %body.message, "request refused");
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response.extensions_mut().insert(ErrorCode(code));
        if let Some(conflict) = conflict {
            response.extensions_mut().insert(conflict);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                "invalid_json",
                format!(
                    "the body is not valid JSON: {}",
                    bound_quotes(&e.body_text())
                ),
            ),
            JsonRejection::JsonDataError(e) => ApiError::new(
                "invalid_body",
                format!(
                    "the body does not fit this request: {}",
                    bound_quotes(&e.body_text())
                ),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                "invalid_header",
                "send the body with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(b) => b.into(),
            other => ApiError::new(
                "invalid_body",
                bound_quotes(&other.body_text()).into_owned(),
            ),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if let Some(timed_out) = crate::timeouts::body_timed_out(&r) {
            return timed_out;
        }
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                "payload_too_large",
                "the request body is over this server's size limit; send less per request",
            )
        } else {
            ApiError::new(
                "invalid_body",
                format!(
                    "the request body could not be read: {}",
                    bound_quotes(&r.body_text())
                ),
            )
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(
            "invalid_path",
            format!(
                "the URL path is not valid: {}",
                bound_quotes(&r.body_text())
            ),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(
            "invalid_query",
            format!(
                "the query string is not valid: {}",
                bound_quotes(&r.body_text())
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_and_store_code_has_a_deliberate_status() {
        for code in [
            "tenant_not_found",
            "tenant_exists",
            "lock_held",
            "invalid_transition",
            "sync_not_pending",
            "invalid_slug",
            "invalid_command",
            "conflict",
            "event_id_reused",
            "invalid_stream_name",
            "empty_batch",
            "event_too_large",
            "invalid_metadata",
            "invalid_input",
            "unknown_position",
            "schema_mismatch",
            "unavailable",
            "slug_taken",
            "idempotency_key_reused",
        ] {
            assert_ne!(status_of(code), StatusCode::INTERNAL_SERVER_ERROR, "{code}");
        }
        assert_eq!(status_of("internal"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            status_of("corrupt_history"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn codes_of_bare_answers_map_back_to_their_status() {
        for status in [400, 401, 403, 404, 405, 413, 414, 431, 500, 503] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(status_of(code_of_status(status)), status, "{status}");
            let body = ApiError::of_status(status).body();
            assert!(!body.message.is_empty());
        }
    }

    #[test]
    fn backend_text_never_reaches_the_body() {
        let err = ApiError::from(StoreError::backend("relation \"events\" does not exist"));
        let body = err.body();
        assert_eq!(body.error, "internal");
        assert!(!body.message.contains("relation"));
        let err = ApiError::from(StoreError::unavailable("connection refused (os error 111)"));
        let body = err.body();
        assert_eq!(body.error, "unavailable");
        assert!(body.message.contains("try again in a moment"));
        assert!(!body.message.contains("111"));
    }
}
