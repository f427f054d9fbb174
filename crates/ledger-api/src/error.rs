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
use ledger_projector::subscription::SubscriptionError;
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
pub(crate) struct ErrorCode(pub Code);

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
        /// The stable code; its status comes from [`Code::status`].
        code: Code,
        /// For a person.
        message: String,
        /// Extra fields of the body.
        details: Map<String, Value>,
    },
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        let message = e.to_string();
        match e {
            SubscriptionError::Store(s) => ApiError::Store(s),
            SubscriptionError::InvalidName => ApiError::new(Code::InvalidPath, message),
            SubscriptionError::InvalidDefinition(_) => ApiError::new(Code::InvalidBody, message),
            SubscriptionError::NotFound(_) => ApiError::new(Code::SubscriptionNotFound, message),
            SubscriptionError::GroupMismatch(_) => ApiError::new(Code::GroupMismatch, message),
            corrupt => ApiError::Store(StoreError::backend_with(
                "a subscription's bookkeeping does not decode",
                corrupt,
            )),
        }
    }
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

/// Declares [`Code`] and [`Code::ALL`] from one list, so `ALL` cannot miss a variant.
macro_rules! codes {
    ($($(#[doc = $doc:literal])* $variant:ident,)*) => {
        /// The stable code of an error body, from the request checks, domain, commands or store.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];
        }
    };
}

codes! {
    // The request's own checks, and answers of the framework or the HTTP server.
    /// The request is not HTTP this server can read.
    InvalidRequest,
    /// The body is not valid JSON.
    InvalidJson,
    /// A path segment is not a tenant id.
    InvalidTenantId,
    /// The URL path does not parse.
    InvalidPath,
    /// The query string does not parse or is out of range.
    InvalidQuery,
    /// An `as_of` or `--at` that is not an RFC 3339 date and time.
    InvalidAsOf,
    /// A header is malformed.
    InvalidHeader,
    /// The Idempotency-Key header is malformed.
    InvalidIdempotencyKey,
    /// The If-Match header is not an ETag of this API.
    InvalidIfMatch,
    /// The body's expected_seq and If-Match disagree.
    ConflictingExpectedSeq,
    /// No valid token.
    Unauthorized,
    /// The token does not reach this resource.
    Forbidden,
    /// No such route.
    NotFound,
    /// No such command.
    UnknownCommand,
    /// No such projection.
    UnknownProjection,
    /// The route does not take this method.
    MethodNotAllowed,
    /// A min_position that is not in the log (yet).
    PositionNotReached,
    /// The body stopped arriving.
    BodyTimeout,
    /// The body is over the size limit.
    PayloadTooLarge,
    /// The URL is over the size limit.
    UriTooLong,
    /// The headers are over the size limit.
    HeadersTooLarge,
    /// The body does not fit the request.
    InvalidBody,
    /// An event does not belong in its stream.
    InvalidEvent,
    /// An append without expected_seq or If-Match.
    ExpectedSeqRequired,
    /// The readiness probe failed.
    NotReady,
    /// A projection has not applied the wanted position yet.
    ProjectionBehind,
    /// This server does not serve the projections.
    ProjectionsUnavailable,
    /// This server does not serve the global log.
    LogUnavailable,
    /// This server keeps no data keys, so it cannot erase a tenant.
    KeysUnavailable,
    /// Every live subscriber slot of this server is taken.
    TooManySubscribers,
    /// No subscription has this name.
    SubscriptionNotFound,
    /// The stream has no events.
    StreamNotFound,
    /// A subscription of this name exists with another definition.
    SubscriptionExists,
    /// A subscription's checkpoint is not where an append's ack expects it.
    CheckpointMoved,
    /// A member index or group size that does not fit a subscription's consumer group.
    GroupMismatch,
    /// The request was not answered in time.
    RequestTimeout,
    /// A progress link that is not one this ledger signed (tampered or cut).
    LinkInvalid,
    /// A progress link past its expiry.
    LinkExpired,
    /// A console form without its session's CSRF token.
    CsrfInvalid,
    // `DomainError`.
    /// The tenant is not registered.
    TenantNotFound,
    /// The tenant is already registered.
    TenantExists,
    /// Another holder's lock is active.
    LockHeld,
    /// The command does not apply in the tenant's phase.
    InvalidTransition,
    /// The downstream sync is not waiting for compensation.
    SyncNotPending,
    /// The slug is malformed.
    InvalidSlug,
    /// A field of the command is malformed.
    InvalidCommand,
    /// The tenant was erased and takes no more commands.
    TenantErased,
    // `ExecuteError`.
    /// The slug belongs to another tenant.
    SlugTaken,
    /// The Idempotency-Key was used for a different request.
    IdempotencyKeyReused,
    /// The tenant's stream holds an event this server cannot read.
    CorruptHistory,
    // `StoreError`.
    /// The stream was not at the expected seq.
    Conflict,
    /// The event id was used for a different event.
    EventIdReused,
    /// The stream name is malformed.
    InvalidStreamName,
    /// An append with no events.
    EmptyBatch,
    /// An event over the size limit.
    EventTooLarge,
    /// Metadata that is not a JSON object.
    InvalidMetadata,
    /// Other malformed input to the store.
    InvalidInput,
    /// A position that is not in the log.
    UnknownPosition,
    /// The database schema is not the version this server needs.
    SchemaMismatch,
    /// The database cannot be reached or written right now.
    Unavailable,
    /// The server failed; the details are in its log.
    Internal,
}

impl Code {
    /// The code as it appears in the body's `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidRequest => "invalid_request",
            Code::InvalidJson => "invalid_json",
            Code::InvalidTenantId => "invalid_tenant_id",
            Code::InvalidPath => "invalid_path",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidAsOf => "invalid_as_of",
            Code::InvalidHeader => "invalid_header",
            Code::InvalidIdempotencyKey => "invalid_idempotency_key",
            Code::InvalidIfMatch => "invalid_if_match",
            Code::ConflictingExpectedSeq => "conflicting_expected_seq",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::LinkInvalid => "link_invalid",
            Code::LinkExpired => "link_expired",
            Code::CsrfInvalid => "csrf_invalid",
            Code::NotFound => "not_found",
            Code::UnknownCommand => "unknown_command",
            Code::UnknownProjection => "unknown_projection",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::PositionNotReached => "position_not_reached",
            Code::BodyTimeout => "body_timeout",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UriTooLong => "uri_too_long",
            Code::HeadersTooLarge => "headers_too_large",
            Code::InvalidBody => "invalid_body",
            Code::InvalidEvent => "invalid_event",
            Code::ExpectedSeqRequired => "expected_seq_required",
            Code::NotReady => "not_ready",
            Code::ProjectionBehind => "projection_behind",
            Code::ProjectionsUnavailable => "projections_unavailable",
            Code::LogUnavailable => "log_unavailable",
            Code::KeysUnavailable => "keys_unavailable",
            Code::TooManySubscribers => "too_many_subscribers",
            Code::SubscriptionNotFound => "subscription_not_found",
            Code::StreamNotFound => "stream_not_found",
            Code::SubscriptionExists => "subscription_exists",
            Code::CheckpointMoved => "checkpoint_moved",
            Code::GroupMismatch => "group_mismatch",
            Code::RequestTimeout => "request_timeout",
            Code::TenantNotFound => "tenant_not_found",
            Code::TenantExists => "tenant_exists",
            Code::LockHeld => "lock_held",
            Code::InvalidTransition => "invalid_transition",
            Code::SyncNotPending => "sync_not_pending",
            Code::InvalidSlug => "invalid_slug",
            Code::InvalidCommand => "invalid_command",
            Code::TenantErased => "tenant_erased",
            Code::SlugTaken => "slug_taken",
            Code::IdempotencyKeyReused => "idempotency_key_reused",
            Code::CorruptHistory => "corrupt_history",
            Code::Conflict => "conflict",
            Code::EventIdReused => "event_id_reused",
            Code::InvalidStreamName => "invalid_stream_name",
            Code::EmptyBatch => "empty_batch",
            Code::EventTooLarge => "event_too_large",
            Code::InvalidMetadata => "invalid_metadata",
            Code::InvalidInput => "invalid_input",
            Code::UnknownPosition => "unknown_position",
            Code::SchemaMismatch => "schema_mismatch",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status of this code: the one place codes become statuses.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidRequest
            | Code::InvalidJson
            | Code::InvalidTenantId
            | Code::InvalidPath
            | Code::InvalidQuery
            | Code::InvalidAsOf
            | Code::InvalidHeader
            | Code::InvalidIdempotencyKey
            | Code::InvalidIfMatch
            | Code::ConflictingExpectedSeq => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden | Code::LinkInvalid | Code::CsrfInvalid => StatusCode::FORBIDDEN,
            Code::LinkExpired => StatusCode::GONE,
            Code::NotFound
            | Code::TenantNotFound
            | Code::UnknownCommand
            | Code::UnknownProjection
            | Code::SubscriptionNotFound
            | Code::StreamNotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::TenantErased => StatusCode::GONE,
            Code::Conflict
            | Code::LockHeld
            | Code::InvalidTransition
            | Code::SlugTaken
            | Code::TenantExists
            | Code::SyncNotPending
            | Code::PositionNotReached
            | Code::SubscriptionExists
            | Code::CheckpointMoved
            | Code::GroupMismatch => StatusCode::CONFLICT,
            Code::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::PayloadTooLarge | Code::EventTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UriTooLong => StatusCode::URI_TOO_LONG,
            Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::InvalidBody
            | Code::InvalidSlug
            | Code::InvalidCommand
            | Code::InvalidEvent
            | Code::InvalidStreamName
            | Code::EmptyBatch
            | Code::InvalidMetadata
            | Code::InvalidInput
            | Code::UnknownPosition
            | Code::EventIdReused
            | Code::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Code::ExpectedSeqRequired => StatusCode::PRECONDITION_REQUIRED,
            Code::Unavailable
            | Code::SchemaMismatch
            | Code::NotReady
            | Code::ProjectionBehind
            | Code::ProjectionsUnavailable
            | Code::LogUnavailable
            | Code::KeysUnavailable
            | Code::TooManySubscribers
            | Code::RequestTimeout => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal | Code::CorruptHistory => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The code of a store error.
fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::Conflict(_) => Code::Conflict,
        StoreError::EventIdReused { .. } => Code::EventIdReused,
        StoreError::InvalidStreamName { .. } => Code::InvalidStreamName,
        StoreError::EmptyBatch => Code::EmptyBatch,
        StoreError::EventTooLarge { .. } => Code::EventTooLarge,
        StoreError::InvalidMetadata { .. } => Code::InvalidMetadata,
        StoreError::InvalidInput(_) => Code::InvalidInput,
        StoreError::UnknownPosition(_) => Code::UnknownPosition,
        StoreError::SchemaMismatch { .. } => Code::SchemaMismatch,
        StoreError::Unavailable { .. } => Code::Unavailable,
        StoreError::Backend { .. } => Code::Internal,
        StoreError::Erased { .. } => Code::TenantErased,
        // `StoreError` is `#[non_exhaustive]` in another crate, so this arm cannot go: a variant
        // added there answers 500 `internal` (its text logged, never sent) until it is mapped here.
        _ => Code::Internal,
    }
}

/// The code of a command error.
fn execute_code(e: &ExecuteError) -> Code {
    match e {
        ExecuteError::Domain(e) => domain_code(e),
        ExecuteError::Conflict(_) => Code::Conflict,
        ExecuteError::SlugTaken { .. } => Code::SlugTaken,
        ExecuteError::IdempotencyKeyReused { .. } => Code::IdempotencyKeyReused,
        ExecuteError::CorruptHistory { .. } => Code::CorruptHistory,
        ExecuteError::Store(e) => store_code(e),
        // `ExecuteError` is `#[non_exhaustive]` in another crate, so this arm cannot go: a variant
        // added there answers 500 `internal` (its text logged, never sent) until it is mapped here.
        _ => Code::Internal,
    }
}

/// The code of a domain error.
fn domain_code(e: &DomainError) -> Code {
    match e {
        DomainError::TenantNotFound => Code::TenantNotFound,
        DomainError::TenantExists => Code::TenantExists,
        DomainError::LockHeld { .. } => Code::LockHeld,
        DomainError::InvalidTransition { .. } => Code::InvalidTransition,
        DomainError::SyncNotPending { .. } => Code::SyncNotPending,
        DomainError::InvalidSlug(_) => Code::InvalidSlug,
        DomainError::InvalidCommand(_) => Code::InvalidCommand,
        DomainError::TenantErased { .. } => Code::TenantErased,
        // `DomainError` is `#[non_exhaustive]` in another crate, so this arm cannot go: a variant
        // added there answers 500 `internal` (its text logged, never sent) until it is mapped here.
        _ => Code::Internal,
    }
}

/// The code of an answer raised without one (by the framework or the HTTP server), by its
/// status: [`Code::status`] maps each back to that status.
pub(crate) fn code_of_status(status: StatusCode) -> Code {
    match status {
        StatusCode::BAD_REQUEST => Code::InvalidRequest,
        StatusCode::UNAUTHORIZED => Code::Unauthorized,
        StatusCode::FORBIDDEN => Code::Forbidden,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::URI_TOO_LONG => Code::UriTooLong,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Code::HeadersTooLarge,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        s if s.is_server_error() => Code::Internal,
        _ => Code::InvalidRequest,
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
    pub fn new(code: Code, message: impl Into<String>) -> Self {
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
        Self::new(Code::Unauthorized, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    /// 500 `internal`, logging `detail` (never sent to the client).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new(Code::Internal, INTERNAL_MESSAGE)
    }

    /// The stable code, by the error's variant.
    pub fn code(&self) -> Code {
        match self {
            ApiError::Store(e) => store_code(e),
            ApiError::Execute(e) => execute_code(e),
            ApiError::Domain(e) => domain_code(e),
            ApiError::Request { code, .. } => *code,
        }
    }

    /// The status the code maps to.
    pub fn status(&self) -> StatusCode {
        self.code().status()
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
                if code.status().is_server_error() {
                    tracing::error!(error = &e as &dyn std::error::Error, "command failed");
                    INTERNAL_MESSAGE.to_string()
                } else {
                    bound_quotes(&e.to_string()).into_owned()
                }
            }
            ApiError::Domain(e) if code == Code::Internal => {
                tracing::error!(error = %e, "domain error without a code of this API");
                INTERNAL_MESSAGE.to_string()
            }
            ApiError::Domain(e) => domain_message(e, &mut details),
        };
        ErrorBody {
            error: code.as_str().to_string(),
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
        StoreError::Erased { subject, erased_at } => {
            details.insert("erased_at".into(), json!(erased_at));
            format!(
                "tenant {subject} was erased at {erased_at}; nothing personal can be written for it any more"
            )
        }
        StoreError::InvalidStreamName { name, reason } => {
            details.insert("stream".into(), json!(excerpt(&name)));
            format!("{} is not a valid stream name: {reason}", quote(&name))
        }
        other if store_code(&other) == Code::Internal => {
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
        DomainError::TenantErased { erased_at } => {
            details.insert("erased_at".into(), json!(erased_at));
        }
        _ => {}
    }
    bound_quotes(&e.to_string()).into_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = code.status();
        let conflict = match &self {
            ApiError::Store(StoreError::Conflict(c))
            | ApiError::Execute(ExecuteError::Conflict(c)) => {
                Some(ConflictOn(c.stream.category().to_string()))
            }
            _ => None,
        };
        let body = self.body();
        if status.is_server_error() {
            tracing::warn!(code = code.as_str(), message = %body.message, "request failed");
        } else {
            tracing::debug!(code = code.as_str(), message = %body.message, "request refused");
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
                Code::InvalidJson,
                format!(
                    "the body is not valid JSON: {}",
                    bound_quotes(&e.body_text())
                ),
            ),
            JsonRejection::JsonDataError(e) => ApiError::new(
                Code::InvalidBody,
                format!(
                    "the body does not fit this request: {}",
                    bound_quotes(&e.body_text())
                ),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                Code::InvalidHeader,
                "send the body with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(b) => b.into(),
            other => ApiError::new(
                Code::InvalidBody,
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
                Code::PayloadTooLarge,
                "the request body is over this server's size limit; send less per request",
            )
        } else {
            ApiError::new(
                Code::InvalidBody,
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
            Code::InvalidPath,
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
            Code::InvalidQuery,
            format!(
                "the query string is not valid: {}",
                bound_quotes(&r.body_text())
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use ledger_core::{ExpectedSeq, Seq, StreamName};
    use ledger_domain::Phase;

    use super::*;

    /// Every code and its status as clients saw them when codes were strings (`status_of`).
    const WIRE: [(&str, u16); 61] = [
        ("invalid_request", 400),
        ("invalid_json", 400),
        ("invalid_tenant_id", 400),
        ("invalid_path", 400),
        ("invalid_query", 400),
        ("invalid_as_of", 400),
        ("invalid_header", 400),
        ("invalid_idempotency_key", 400),
        ("invalid_if_match", 400),
        ("conflicting_expected_seq", 400),
        ("unauthorized", 401),
        ("forbidden", 403),
        ("link_invalid", 403),
        ("link_expired", 410),
        ("csrf_invalid", 403),
        ("not_found", 404),
        ("tenant_not_found", 404),
        ("unknown_command", 404),
        ("unknown_projection", 404),
        ("method_not_allowed", 405),
        ("tenant_erased", 410),
        ("conflict", 409),
        ("lock_held", 409),
        ("invalid_transition", 409),
        ("slug_taken", 409),
        ("tenant_exists", 409),
        ("sync_not_pending", 409),
        ("position_not_reached", 409),
        ("body_timeout", 408),
        ("payload_too_large", 413),
        ("event_too_large", 413),
        ("uri_too_long", 414),
        ("headers_too_large", 431),
        ("invalid_body", 422),
        ("invalid_slug", 422),
        ("invalid_command", 422),
        ("invalid_event", 422),
        ("invalid_stream_name", 422),
        ("empty_batch", 422),
        ("invalid_metadata", 422),
        ("invalid_input", 422),
        ("unknown_position", 422),
        ("event_id_reused", 422),
        ("idempotency_key_reused", 422),
        ("expected_seq_required", 428),
        ("unavailable", 503),
        ("schema_mismatch", 503),
        ("not_ready", 503),
        ("projection_behind", 503),
        ("projections_unavailable", 503),
        ("log_unavailable", 503),
        ("keys_unavailable", 503),
        ("too_many_subscribers", 503),
        ("subscription_not_found", 404),
        ("stream_not_found", 404),
        ("subscription_exists", 409),
        ("checkpoint_moved", 409),
        ("group_mismatch", 409),
        ("request_timeout", 503),
        ("internal", 500),
        ("corrupt_history", 500),
    ];

    fn by_text() -> HashMap<&'static str, Code> {
        Code::ALL.iter().map(|&c| (c.as_str(), c)).collect()
    }

    fn conflict() -> Box<Conflict> {
        Box::new(Conflict {
            stream: StreamName::parse("tenant-1").unwrap(),
            expected: ExpectedSeq::Exact(Seq(1)),
            current_seq: Seq(2),
            missed: Vec::new(),
            missed_truncated: false,
        })
    }

    fn lock_held() -> DomainError {
        DomainError::LockHeld {
            holder: "ops".into(),
            expires_at: chrono::Utc::now(),
        }
    }

    /// One error of each `StoreError` variant.
    fn store_errors() -> Vec<StoreError> {
        vec![
            StoreError::Conflict(conflict()),
            StoreError::EventIdReused {
                event_id: uuid::Uuid::nil(),
            },
            StoreError::InvalidStreamName {
                name: "x".into(),
                reason: "no category",
            },
            StoreError::EmptyBatch,
            StoreError::EventTooLarge {
                index: 0,
                size: 2,
                limit: 1,
            },
            StoreError::InvalidMetadata { index: 0 },
            StoreError::InvalidInput("x".into()),
            StoreError::UnknownPosition(7),
            StoreError::SchemaMismatch {
                found: 1,
                needed: 2,
            },
            StoreError::unavailable("x"),
            StoreError::backend("x"),
        ]
    }

    /// One error of each `DomainError` variant.
    fn domain_errors() -> Vec<DomainError> {
        vec![
            DomainError::TenantNotFound,
            DomainError::TenantExists,
            lock_held(),
            DomainError::InvalidTransition {
                phase: Phase::default(),
                command: "complete",
            },
            DomainError::SyncNotPending {
                target: "crm".into(),
            },
            DomainError::InvalidSlug("X".into()),
            DomainError::InvalidCommand("x".into()),
            DomainError::TenantErased {
                erased_at: chrono::Utc::now(),
            },
        ]
    }

    /// One error of each `ExecuteError` variant.
    fn execute_errors() -> Vec<ExecuteError> {
        vec![
            ExecuteError::Domain(lock_held()),
            ExecuteError::Conflict(conflict()),
            ExecuteError::SlugTaken { slug: "a".into() },
            ExecuteError::IdempotencyKeyReused { key: "k".into() },
            ExecuteError::CorruptHistory {
                stream: StreamName::parse("tenant-1").unwrap(),
                seq: Seq(1),
                reason: "x".into(),
            },
            ExecuteError::Store(StoreError::EmptyBatch),
        ]
    }

    #[test]
    fn every_code_round_trips_through_its_text() {
        let by_text = by_text();
        assert_eq!(by_text.len(), Code::ALL.len(), "two codes share a text");
        for &code in Code::ALL {
            assert_eq!(by_text[code.as_str()], code);
            assert_eq!(code.to_string(), code.as_str());
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code} is not snake_case"
            );
        }
    }

    #[test]
    fn codes_keep_the_text_and_status_clients_know() {
        let now: HashMap<&str, u16> = Code::ALL
            .iter()
            .map(|c| (c.as_str(), c.status().as_u16()))
            .collect();
        let before: HashMap<&str, u16> = WIRE.into_iter().collect();
        assert_eq!(now, before);
    }

    #[test]
    fn every_domain_store_and_command_error_keeps_its_code_and_a_deliberate_status() {
        let errors = store_errors()
            .into_iter()
            .map(|e| (e.code(), ApiError::Store(e)))
            .chain(
                domain_errors()
                    .into_iter()
                    .map(|e| (e.code(), ApiError::Domain(e))),
            )
            .chain(
                execute_errors()
                    .into_iter()
                    .map(|e| (e.code(), ApiError::Execute(e))),
            );
        for (own, err) in errors {
            assert_eq!(err.code().as_str(), own);
            let deliberate_500 = matches!(own, "internal" | "corrupt_history");
            assert_eq!(
                err.status() == StatusCode::INTERNAL_SERVER_ERROR,
                deliberate_500,
                "{own}"
            );
        }
    }

    #[test]
    fn each_error_family_answers_with_the_status_the_openapi_document_declares() {
        let status = |e: ApiError| e.status().as_u16();
        assert_eq!(status(StoreError::Conflict(conflict()).into()), 409);
        assert_eq!(status(ExecuteError::Conflict(conflict()).into()), 409);
        assert_eq!(status(lock_held().into()), 409);
        assert_eq!(status(ExecuteError::Domain(lock_held()).into()), 409);
        assert_eq!(
            status(ApiError::Execute(ExecuteError::Domain(lock_held()))),
            409
        );
        assert_eq!(status(ApiError::unauthorized("no token")), 401);
        assert_eq!(status(ApiError::new(Code::ProjectionBehind, "wait")), 503);
        let too_large = StoreError::EventTooLarge {
            index: 0,
            size: 2,
            limit: 1,
        };
        assert_eq!(status(too_large.into()), 413);
        assert_eq!(status(StoreError::backend("x").into()), 500);
        assert_eq!(status(ApiError::internal("x")), 500);
        for unavailable in [
            ApiError::from(StoreError::unavailable("x")),
            ApiError::from(ExecuteError::Store(StoreError::unavailable("x"))),
            ApiError::new(Code::Unavailable, "read-only"),
        ] {
            let response = unavailable.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], "1");
            let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
            assert_eq!(code, Some(Code::Unavailable));
        }

        // Every code the document lists under a status has that status.
        let by_text = by_text();
        let mut listed = HashSet::new();
        let doc = crate::openapi();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(responses) = operation["responses"].as_object() else {
                    continue;
                };
                for (status, response) in responses {
                    let text = response["description"].as_str().unwrap_or_default();
                    let quoted = text.split('`').skip(1).step_by(2);
                    for code in quoted.filter_map(|word| by_text.get(word)) {
                        assert_eq!(code.status().as_str(), status, "{method} {path}: {code}");
                        listed.insert(*code);
                    }
                }
            }
        }
        for code in [
            Code::Conflict,
            Code::LockHeld,
            Code::Unauthorized,
            Code::ProjectionBehind,
            Code::Unavailable,
            Code::EventTooLarge,
        ] {
            assert!(listed.contains(&code), "{code} is not in the document");
        }
    }

    #[test]
    fn codes_of_bare_answers_map_back_to_their_status() {
        for status in [400, 401, 403, 404, 405, 413, 414, 431, 500, 503] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(code_of_status(status).status(), status, "{status}");
            let body = ApiError::of_status(status).body();
            assert!(!body.message.is_empty());
        }
    }

    #[test]
    fn an_erased_tenant_answers_410_with_when_it_was_erased() {
        let erased_at = chrono::DateTime::parse_from_rfc3339("2026-01-20T09:00:05Z")
            .unwrap()
            .to_utc();
        for err in [
            ApiError::from(DomainError::TenantErased { erased_at }),
            ApiError::from(ExecuteError::Domain(DomainError::TenantErased {
                erased_at,
            })),
        ] {
            assert_eq!(err.code(), Code::TenantErased);
            assert_eq!(err.status(), StatusCode::GONE);
            let body = err.body();
            assert_eq!(body.error, "tenant_erased");
            assert_eq!(
                body.message,
                "tenant was erased at 2026-01-20 09:00:05 UTC; it takes no more commands"
            );
            assert_eq!(body.details["erased_at"], json!("2026-01-20T09:00:05Z"));
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
