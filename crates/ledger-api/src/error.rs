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
        "invalid_json"
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
        "conflict" | "lock_held" | "invalid_transition" | "slug_taken" | "tenant_exists"
        | "sync_not_pending" => StatusCode::CONFLICT,
        "body_timeout" => StatusCode::REQUEST_TIMEOUT,
        "payload_too_large" | "event_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
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

    /// The response body (message and details), logging what must not reach the client.
    fn body(self) -> ErrorBody {
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
                    "slug {slug:?} is already taken by another tenant; choose another slug"
                );
                details.insert("slug".into(), json!(slug));
                message
            }
            ApiError::Execute(ExecuteError::IdempotencyKeyReused { key }) => {
                let message = format!(
                    "Idempotency-Key {key:?} was already used for a different request; send a new key with a new request"
                );
                details.insert("idempotency_key".into(), json!(key));
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
                    e.to_string()
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

fn conflict_details(c: &Conflict, details: &mut Map<String, Value>) {
    details.insert("stream".into(), json!(c.stream));
    details.insert("expected_seq".into(), json!(c.expected));
    details.insert("current_seq".into(), json!(c.current_seq));
}

fn conflict_message(c: &Conflict) -> String {
    format!(
        "stream {} is at seq {}, not at the expected {}: someone else wrote first; read it again, decide again and retry with expected_seq {}",
        c.stream, c.current_seq, c.expected, c.current_seq
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
            details.insert("stream".into(), json!(name));
            format!("{name:?} is not a valid stream name: {reason}")
        }
        other if other.code() == "internal" => {
            tracing::error!(error = %other, "store error");
            INTERNAL_MESSAGE.to_string()
        }
        other => other.to_string(),
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
    e.to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = status_of(code);
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
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                "invalid_json",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => ApiError::new(
                "invalid_body",
                format!("the body does not fit this request: {}", e.body_text()),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                "invalid_header",
                "send the body with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(b) => b.into(),
            other => ApiError::new("invalid_body", other.body_text()),
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
                format!("the request body could not be read: {}", r.body_text()),
            )
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(
            "invalid_path",
            format!("the URL path is not valid: {}", r.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(
            "invalid_query",
            format!("the query string is not valid: {}", r.body_text()),
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
