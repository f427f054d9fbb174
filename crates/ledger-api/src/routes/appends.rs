//! `POST /v1/events`: appends to several streams at once, each with its own expected seq, all
//! or nothing, as the Rust store's `append_multi`; optionally moving a subscription's
//! checkpoint in the same transaction (exactly-once processing for projection jobs).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use ledger_commands::ExecuteError;
use ledger_core::{ExpectedSeq, LogCursor, StoreError, StreamAppend, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Writer;
use crate::context::RequestContext;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{
    MAX_POSITION, RawBody, body_seq, from_object, idempotency, json_object, whole_numbers,
};
use crate::routes::events::parse_cursor;
use crate::routes::streams::{
    Appended, EventInput, ExpectedSeqSchema, check_fingerprint, new_events,
};
use crate::routes::subscriptions::require_known;
use crate::state::AppState;
use ledger_projector::subscription as subs;

/// Appends to several streams, and perhaps an ack.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiAppend {
    /// One append per stream, all committed together or none.
    pub appends: Vec<StreamEvents>,
    /// A subscription checkpoint moved in the same transaction: the append is refused (409
    /// `checkpoint_moved`) if another worker already processed up to `cursor`.
    #[serde(default)]
    pub ack: Option<AckInput>,
}

/// One stream's part of a multi-stream append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamEvents {
    /// The stream, `category-id`.
    pub stream: String,
    /// Required: the stream's seq as the writer last saw it (or `no_stream`, `exists`, `any`).
    #[schema(value_type = ExpectedSeqSchema)]
    pub expected_seq: ExpectedSeq,
    /// One or more events, in order.
    pub events: Vec<EventInput>,
}

/// The checkpoint an append moves.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckInput {
    /// The subscription.
    pub subscription: String,
    /// The member of its group (default 0).
    #[serde(default)]
    pub member: u32,
    /// Everything up to this cursor is processed by this append.
    pub cursor: String,
    /// The checkpoint the job read its events after (a page's `checkpoint`): when given, the
    /// append is refused unless the checkpoint is still there.
    #[serde(default)]
    pub after: Option<String>,
}

/// What a multi-stream append wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct MultiAppended {
    /// One result per stream, in the request's order.
    pub results: Vec<Appended>,
    /// The subscription member's checkpoint now, when the append carried an ack.
    pub checkpoint: Option<String>,
}

/// Appends to several streams atomically.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "streams",
    request_body = MultiAppend,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Derives the events' ids: a retry with the same key and body writes nothing and returns the first response"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Appended, all of it", body = MultiAppended),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant token reaches only its own `tenant-<id>` stream; an ack needs the admin token", body = ErrorBody),
        (status = 404, description = "`subscription_not_found`", body = ErrorBody),
        (status = 409, description = "`conflict` (one stream was not at its expected seq; nothing written), `checkpoint_moved`, `group_mismatch` or `position_not_reached` (the ack's cursor names no event)", body = ErrorBody),
        (status = 410, description = "`tenant_erased`: a personal field for an erased tenant", body = ErrorBody),
        (status = 413, description = "`payload_too_large` or `event_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_body`, `invalid_event`, `invalid_stream_name`, `empty_batch`, `invalid_metadata`, `invalid_input`, `event_id_reused` or `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`unavailable` or `log_unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn append_many(
    caller: Writer,
    ctx: RequestContext,
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    RawBody(body): RawBody,
) -> Result<Json<MultiAppended>, ApiError> {
    let mut object = json_object(&body)?;
    if let Some(Value::Array(appends)) = object.get_mut("appends") {
        for append in appends.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(number @ Value::Number(_)) = append.get("expected_seq") {
                let seq = body_seq(number).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidBody,
                        format!("expected_seq must be a seq from 0 to {MAX_POSITION}, \"no_stream\", \"exists\" or \"any\""),
                    )
                })?;
                append.insert("expected_seq".into(), Value::from(seq));
            }
        }
    }
    if let Some(Value::Object(ack)) = object.get_mut("ack") {
        whole_numbers(ack, &["member"]);
    }
    let input: MultiAppend = from_object(object)?;
    if input.appends.is_empty() {
        return Err(ApiError::new(
            Code::InvalidBody,
            "appends must hold at least one stream's events",
        ));
    }
    let idem = idempotency(&headers, "POST", uri.path(), &body)?;
    let base = ctx.metadata(&caller);
    let mut appends = Vec::with_capacity(input.appends.len() + 1);
    let mut derived: Vec<Uuid> = Vec::new();
    for part in input.appends {
        let stream = StreamName::parse(part.stream)?;
        caller.require_stream(&stream)?;
        if let Some(idem) = &idem {
            derived.extend((0..part.events.len()).map(|i| idem.event_id(stream.as_str(), i)));
        }
        let events = new_events(&stream, part.events, &base, idem.as_ref())?;
        appends.push(StreamAppend::new(stream, part.expected_seq, events));
    }
    let written = appends.len();
    let ack = match input.ack {
        None => None,
        Some(ack) => {
            caller.require_admin()?;
            let (append, cursor) = ack_append(&state, &ack, Value::Object(base.clone())).await?;
            appends.push(append);
            Some((ack, cursor))
        }
    };
    let results = match state.store.append_multi(appends).await {
        Ok(results) => results,
        Err(StoreError::Conflict(conflict))
            if ack.as_ref().is_some_and(|(a, _)| {
                conflict.stream == subs::ack_stream(&a.subscription, a.member)
            }) =>
        {
            return Err(checkpoint_moved());
        }
        Err(StoreError::EventIdReused { event_id }) if derived.contains(&event_id) => {
            let key = idem.map(|i| i.key).unwrap_or_default();
            return Err(ExecuteError::IdempotencyKeyReused { key }.into());
        }
        Err(e) => return Err(e.into()),
    };
    if let (Some(idem), Some(first)) = (&idem, results.first())
        && first.replayed
    {
        check_fingerprint(state.store.as_ref(), first, idem).await?;
        state.metrics.replay("multi");
    }
    Ok(Json(MultiAppended {
        results: results
            .iter()
            .take(written)
            .map(|r| Appended {
                stream: r.stream.to_string(),
                first_seq: r.first_seq.0,
                last_seq: r.last_seq.0,
                position: r.position.0,
            })
            .collect(),
        checkpoint: ack.map(|(_, cursor)| cursor.to_string()),
    }))
}

/// The answer to an ack whose checkpoint is not where the job thinks.
pub(crate) fn checkpoint_moved() -> ApiError {
    ApiError::new(
        Code::CheckpointMoved,
        "the subscription's checkpoint moved: another worker processed these events; nothing was written, read the subscription's events again",
    )
}

/// The append that moves the checkpoint `ack` names, after checking it is still where the
/// job thinks and behind the ack's cursor.
pub(crate) async fn ack_append(
    state: &AppState,
    ack: &AckInput,
    metadata: Value,
) -> Result<(StreamAppend, LogCursor), ApiError> {
    subs::check_name(&ack.subscription).map_err(|_| {
        ApiError::new(
            Code::InvalidBody,
            "ack.subscription is no subscription name",
        )
    })?;
    let definition = subs::existing(state.store.as_ref(), &ack.subscription).await?;
    let member = definition.member(ack.member, None)?;
    let bad_cursor = |_| {
        ApiError::new(
            Code::InvalidBody,
            "ack.cursor and ack.after must be cursors of 32 hex digits",
        )
    };
    let cursor = parse_cursor("ack.cursor", &ack.cursor).map_err(bad_cursor)?;
    let after = match &ack.after {
        Some(after) => Some(parse_cursor("ack.after", after).map_err(bad_cursor)?),
        None => None,
    };
    require_known(state, cursor).await?;
    let from = subs::checkpoint(state.store.as_ref(), &ack.subscription, member).await?;
    if cursor <= from.cursor || after.is_some_and(|a| a != from.cursor) {
        return Err(checkpoint_moved());
    }
    Ok((
        subs::ack(&ack.subscription, member, from, cursor, metadata),
        cursor,
    ))
}
