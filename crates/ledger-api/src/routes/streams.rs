//! `POST /v1/streams/{stream}/events` (append with a required expected seq) and
//! `GET /v1/streams/{stream}/events` (page through a stream), for writers with their own
//! aggregates.

use axum::Json;
use axum::extract::State;
use axum::http::header::ETAG;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use ledger_commands::{ExecuteError, Idempotency};
use ledger_core::{
    AppendResult, EventStore, ExpectedSeq, NewEvent, Seq, StoreError, StreamAppend, StreamName,
};
use ledger_domain::{SlugClaimed, TenantEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{
    Caller, TOKEN_ISSUED, TOKEN_METADATA_KEY, TOKEN_STREAM_CATEGORY, TenantTokenIssued, Writer,
};
use crate::context::RequestContext;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{
    ApiPath, ApiQuery, IDEMPOTENT_REPLAYED, MAX_POSITION, RawBody, body_seq, etag, from_object,
    idempotency, if_match, json_object, page_limit, position_param, whole_numbers,
};
use crate::quote::{bound_quotes, excerpt};
use crate::routes::appends::{AckInput, ack_append, checkpoint_moved};
use crate::routes::tenants::header;
use crate::routes::tokens::{FINGERPRINT_KEY, KEY_KEY};
use crate::state::AppState;
use crate::token_registry::ADMIN_TOKEN_STREAM_CATEGORY;
use crate::views::EventPage;

/// Metadata keys only the server sets.
const RESERVED_METADATA: [&str; 5] = [
    "actor",
    "request_id",
    TOKEN_METADATA_KEY,
    KEY_KEY,
    FINGERPRINT_KEY,
];

/// The named expectations.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ExpectedName {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    Exists,
    /// No expectation: an explicit opt-out of optimistic concurrency.
    Any,
}

/// What the writer believes the stream's seq is: a number, `no_stream`, `exists` or `any`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = ExpectedSeq)]
#[allow(dead_code)]
pub(crate) enum ExpectedSeqSchema {
    /// Exactly this seq (0: the stream does not exist).
    Seq(u64),
    /// A named expectation.
    Named(ExpectedName),
}

/// Events to append to one stream, atomically.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendEvents {
    /// Required: the stream's seq as the writer last saw it (or `no_stream`, `exists`, `any`).
    #[schema(value_type = ExpectedSeqSchema)]
    pub expected_seq: ExpectedSeq,
    /// One or more events, in order.
    pub events: Vec<EventInput>,
    /// A subscription checkpoint moved in the same transaction (as in `POST /v1/events`).
    #[serde(default)]
    pub ack: Option<AckInput>,
}

/// One event to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Its id; a retry with the same ids writes nothing. Generated (UUID v7) when absent.
    #[serde(default)]
    pub event_id: Option<Uuid>,
    /// The event type; `tenant-*` streams accept only the onboarding catalog.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Free metadata keys (an object); the server adds `actor` (`{role, token, token_id,
    /// tenant?, on_behalf_of?}`), `request_id`, `correlation_id` and `causation_id`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// What an append wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct Appended {
    /// The stream.
    pub stream: String,
    /// The seq of the first appended event.
    pub first_seq: u64,
    /// The seq of the last appended event: the stream's seq now.
    pub last_seq: u64,
    /// The global position of the last appended event.
    pub position: u64,
}

/// Which part of a stream to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The first seq to return (default 1).
    pub from_seq: Option<u64>,
    /// Most events to return (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Appends events to a stream if it is at the expected seq.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/events",
    tag = "streams",
    request_body = AppendEvents,
    params(
        ("stream" = String, Path, description = "`category-id`, e.g. `order-42`"),
        ("If-Match" = Option<String>, Header, description = "The expected seq, quoted, instead of `expected_seq` in the body"),
        ("Idempotency-Key" = Option<String>, Header, description = "Derives the events' ids: a retry with the same key and body writes nothing and returns the first response"),
        ("X-On-Behalf-Of" = Option<String>, Header, description = "The person or service an admin token acts for, recorded in `actor.on_behalf_of` (a tenant token sending it gets 403)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Appended", body = Appended),
        (status = 400, description = "`invalid_json`, `invalid_if_match`, `conflicting_expected_seq` or `invalid_header`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant token reaches only its own `tenant-<id>` stream; an auditor token; a tenant token with X-On-Behalf-Of; an `ack` needs the admin token", body = ErrorBody),
        (status = 404, description = "`subscription_not_found` (an `ack` naming no subscription)", body = ErrorBody),
        (status = 409, description = "`conflict` with `current_seq`; with an `ack`: `checkpoint_moved`, `group_mismatch` or `position_not_reached`", body = ErrorBody),
        (status = 410, description = "`tenant_erased`: a personal field for an erased tenant", body = ErrorBody),
        (status = 413, description = "`payload_too_large` or `event_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_body`, `invalid_event`, `invalid_stream_name`, `empty_batch`, `invalid_metadata`, `invalid_input`, `event_id_reused` or `idempotency_key_reused`", body = ErrorBody),
        (status = 428, description = "`expected_seq_required`", body = ErrorBody),
        (status = 503, description = "`unavailable` or `log_unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn append(
    caller: Writer,
    ctx: RequestContext,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    uri: Uri,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let stream = StreamName::parse(name)?;
    caller.require_stream(&stream)?;
    let mut object = json_object(&body)?;
    let header_expected = if_match(&headers)?;
    if let Some(number @ Value::Number(_)) = object.get("expected_seq") {
        let seq = body_seq(number).ok_or_else(|| {
            ApiError::new(
                Code::InvalidBody,
                format!("expected_seq must be a seq from 0 to {MAX_POSITION}, \"no_stream\", \"exists\" or \"any\""),
            )
        })?;
        object.insert("expected_seq".into(), Value::from(seq));
    }
    match (object.get("expected_seq"), header_expected) {
        (None | Some(Value::Null), None) => {
            return Err(ApiError::new(
                Code::ExpectedSeqRequired,
                "say which seq you expect the stream to be at: send expected_seq (the seq you last read, \"no_stream\", \"exists\", or \"any\" to opt out) or If-Match",
            ));
        }
        (None | Some(Value::Null), Some(seq)) => {
            object.insert("expected_seq".into(), Value::from(seq));
        }
        (Some(v), Some(seq)) if v.as_u64() != Some(seq) => {
            return Err(ApiError::new(
                Code::ConflictingExpectedSeq,
                "expected_seq in the body and If-Match disagree; send one of them",
            ));
        }
        _ => {}
    }
    if let Some(Value::Object(ack)) = object.get_mut("ack") {
        whole_numbers(ack, &["member"]);
    }
    let input: AppendEvents = from_object(object)?;
    let idem = idempotency(&headers, "POST", uri.path(), &body)?;
    let base = ctx.metadata(&caller);
    let events = new_events(&stream, input.events, &base, idem.as_ref())?;
    let derived: Vec<Uuid> = match &idem {
        Some(idem) => (0..events.len())
            .map(|i| idem.event_id(stream.as_str(), i))
            .collect(),
        None => Vec::new(),
    };
    let result = match input.ack {
        None => {
            state
                .store
                .append(stream.clone(), input.expected_seq, events)
                .await
        }
        Some(ack) => {
            caller.require_admin()?;
            let metadata = Value::Object(base.clone());
            let (ack_append, _) = ack_append(&state, &ack, metadata).await?;
            let appends = vec![
                StreamAppend::new(stream.clone(), input.expected_seq, events),
                ack_append.clone(),
            ];
            match state.store.append_multi(appends).await {
                Err(StoreError::Conflict(c)) if c.stream == ack_append.stream => {
                    return Err(checkpoint_moved());
                }
                other => other.map(|mut results| results.swap_remove(0)),
            }
        }
    };
    let result = match result {
        Ok(r) => r,
        Err(StoreError::EventIdReused { event_id }) if derived.contains(&event_id) => {
            let key = idem.map(|i| i.key).unwrap_or_default();
            return Err(ExecuteError::IdempotencyKeyReused { key }.into());
        }
        Err(e) => return Err(e.into()),
    };
    if result.replayed {
        if let Some(idem) = &idem {
            check_fingerprint(state.store.as_ref(), &result, idem).await?;
        }
        state.metrics.replay("stream");
    }
    let mut out = HeaderMap::new();
    out.insert(ETAG, header(&etag(result.last_seq.0)));
    if result.replayed {
        out.insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    let body = Appended {
        stream: result.stream.to_string(),
        first_seq: result.first_seq.0,
        last_seq: result.last_seq.0,
        position: result.position.0,
    };
    Ok((out, Json(body)).into_response())
}

/// The events to append to `stream` from the request's `inputs`: checked against the
/// catalog, with the server's metadata (`base`, and the idempotency key's) over the writer's,
/// and ids given, derived from the idempotency key, or fresh.
pub(crate) fn new_events(
    stream: &StreamName,
    inputs: Vec<EventInput>,
    base: &Map<String, Value>,
    idem: Option<&Idempotency>,
) -> Result<Vec<NewEvent>, ApiError> {
    let mut events = Vec::with_capacity(inputs.len());
    for (index, event) in inputs.into_iter().enumerate() {
        check_catalog(stream, index, &event)?;
        let mut metadata = match event.metadata {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(StoreError::InvalidMetadata { index }.into()),
        };
        for key in RESERVED_METADATA {
            metadata.remove(key);
        }
        metadata.extend(base.clone());
        if let Some(idem) = idem {
            metadata.insert(KEY_KEY.into(), Value::String(idem.key.clone()));
            metadata.insert(
                FINGERPRINT_KEY.into(),
                Value::String(idem.fingerprint.clone()),
            );
        }
        let id = match (event.event_id, idem) {
            (Some(id), _) => id,
            (None, Some(idem)) => idem.event_id(stream.as_str(), index),
            (None, None) => Uuid::now_v7(),
        };
        events.push(
            NewEvent::new(event.event_type, event.data)
                .with_id(id)
                .with_metadata(Value::Object(metadata)),
        );
    }
    Ok(events)
}

/// Refuses events outside the catalog of the ledger's own stream categories.
fn check_catalog(stream: &StreamName, index: usize, event: &EventInput) -> Result<(), ApiError> {
    let refuse = |reason: String| {
        Err(ApiError::new(
            Code::InvalidEvent,
            format!(
                "event {index} does not belong in {}: {}",
                excerpt(stream.as_str()),
                bound_quotes(&reason)
            ),
        )
        .with("index", index)
        .with("type", excerpt(&event.event_type)))
    };
    match stream.category() {
        "tenant" => match TenantEvent::from_parts(&event.event_type, &event.data) {
            Ok(_) => Ok(()),
            Err(e) if !TenantEvent::TYPES.contains(&e.event_type.as_str()) => refuse(format!(
                "tenant streams accept only the onboarding events ({})",
                TenantEvent::TYPES.join(", ")
            )),
            Err(e) => refuse(format!("invalid {} data: {}", e.event_type, e.reason)),
        },
        "slug" => match serde_json::from_value::<SlugClaimed>(event.data.clone()) {
            Ok(_) if event.event_type == SlugClaimed::TYPE => Ok(()),
            Ok(_) => refuse("slug streams accept only SlugClaimed events".into()),
            Err(e) => refuse(format!("invalid SlugClaimed data: {e}")),
        },
        ADMIN_TOKEN_STREAM_CATEGORY => refuse(format!(
            "{ADMIN_TOKEN_STREAM_CATEGORY} streams hold the admin token registry, written only by `ledger token` and `ledger serve`"
        )),
        TOKEN_STREAM_CATEGORY => {
            match serde_json::from_value::<TenantTokenIssued>(event.data.clone()) {
                Ok(_) if event.event_type == TOKEN_ISSUED => Ok(()),
                Ok(_) => refuse(format!(
                    "{TOKEN_STREAM_CATEGORY} streams accept only {TOKEN_ISSUED} events"
                )),
                Err(e) => refuse(format!("invalid {TOKEN_ISSUED} data: {e}")),
            }
        }
        _ => Ok(()),
    }
}

/// Refuses a replay whose stored events were appended by a request with another body.
pub(crate) async fn check_fingerprint(
    store: &dyn EventStore,
    result: &AppendResult,
    idem: &Idempotency,
) -> Result<(), ApiError> {
    let mut events = store.read_stream(result.stream.clone(), result.first_seq);
    let first = events.try_next().await?;
    let stored = first
        .as_ref()
        .and_then(|e| e.metadata.get(FINGERPRINT_KEY))
        .and_then(Value::as_str);
    if stored == Some(idem.fingerprint.as_str()) {
        Ok(())
    } else {
        Err(ExecuteError::IdempotencyKeyReused {
            key: idem.key.clone(),
        }
        .into())
    }
}

/// Reads a page of a stream, oldest first.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/events",
    tag = "streams",
    params(
        ("stream" = String, Path, description = "`category-id`, e.g. `order-42`"),
        PageQuery,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events; follow `next_from_seq` for the next", body = EventPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant token reaches only its own `tenant-<id>` stream", body = ErrorBody),
        (status = 422, description = "`invalid_stream_name`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn read(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let stream = StreamName::parse(name)?;
    caller.require_stream(&stream)?;
    let limit = page_limit(query.limit, &state.config)?;
    let from = Seq(position_param("from_seq", query.from_seq)?
        .unwrap_or(1)
        .max(1));
    let mut events: Vec<_> = state
        .store
        .read_stream(stream, from)
        .take(limit + 1)
        .try_collect()
        .await?;
    let next_from_seq = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.seq.0 + 1)
    } else {
        None
    };
    Ok(Json(EventPage {
        events,
        next_from_seq,
    }))
}
