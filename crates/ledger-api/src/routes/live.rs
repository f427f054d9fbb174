//! `GET /v1/events/live`: the global log as a live stream (Server-Sent Events, or NDJSON with
//! `Accept: application/x-ndjson`). It pages from the database until it has caught up, then
//! follows the server's shared tail of the log (see `tail`), and never skips nor repeats an
//! event, one that commits late included. Each SSE event's `id` is its cursor, so a client
//! that reconnects with `Last-Event-ID` resumes exactly.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use std::sync::Arc;

use ledger_core::LogCursor;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::ApiQuery;
use crate::routes::events::Reading;
use crate::shutdown::{Draining, shutting_down};
use crate::state::AppState;
use crate::tail::{Found, Outgoing, Subscription, Wakers};

/// Events read or taken from the tail at a time.
const PAGE: usize = 500;

/// Pause before a stream that found the database failing reads again (it doubles, up to
/// [`MAX_RETRY`]).
const RETRY: Duration = Duration::from_millis(100);

/// Longest pause between two reads of a failing database.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// When a stream stopped by a shutdown tells its client to reconnect.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// The NDJSON media type.
const NDJSON: &str = "application/x-ndjson";

/// Which events to follow, from where.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Start after this cursor (a `Last-Event-ID` header takes its place on reconnects).
    /// Absent: from the start of the log.
    pub cursor: Option<String>,
    /// Start after the event at this position instead (0: from the start).
    pub after: Option<u64>,
    /// Only streams of these categories, comma-separated.
    pub category: Option<String>,
    /// Only events of these types, comma-separated.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// End the stream after this many seconds (1 to 3600; absent: it runs until the client
    /// leaves or the server stops), for clients behind proxies that cut long responses.
    pub seconds: Option<u64>,
}

/// One Server-Sent Event of a live stream.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = LiveEvent)]
#[allow(dead_code)]
pub(crate) struct SseEventSchema {
    /// `event` for a log event, `shutdown` when the server stops.
    event: String,
    /// The event's cursor (absent on `shutdown`).
    id: Option<String>,
    /// The event as JSON text, as in `GET /v1/events` (with `cursor`).
    data: String,
    /// On `shutdown`: milliseconds to wait before reconnecting.
    retry: Option<u64>,
}

/// What a live stream sends.
enum Item {
    /// An event.
    Event(Arc<Outgoing>),
    /// Nothing happened for a while.
    Heartbeat,
    /// The server stops: reconnect.
    Shutdown,
}

/// Follows the global log live.
#[utoipa::path(
    get,
    path = "/v1/events/live",
    tag = "log",
    params(
        LiveQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: resume after it (what an EventSource sends when it reconnects)"),
        ("Accept" = Option<String>, Header, description = "`application/x-ndjson` for one JSON event per line (blank lines are heartbeats); otherwise Server-Sent Events"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: one `event` per log event, `id` its cursor and `data` the event as in `GET /v1/events` (with `cursor`); comments as heartbeats; a `shutdown` event with `retry` when the server stops. With `Accept: application/x-ndjson`, one event per line and blank heartbeat lines. Catches up from the database, then follows live; never skips nor repeats an event.", content((SseEventSchema = "text/event-stream"), (String = "application/x-ndjson"))),
        (status = 400, description = "`invalid_query` or `invalid_header` (a bad `Last-Event-ID`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`position_not_reached`: `after` is no event's position in the log (yet)", body = ErrorBody),
        (status = 503, description = "`log_unavailable`, `too_many_subscribers` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn live(
    caller: Caller,
    State(state): State<AppState>,
    draining: Option<Extension<Draining>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LiveQuery>,
) -> Result<Response, ApiError> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.parse::<LogCursor>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidHeader,
                        "Last-Event-ID must be the id of an event this stream sent: a cursor of 32 hex digits",
                    )
                })?,
        ),
    };
    let seconds = match query.seconds {
        Some(s @ 1..=3600) => Some(Duration::from_secs(s)),
        Some(other) => {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("seconds must be 1 to 3600, not {other}"),
            ));
        }
        None => None,
    };
    let mut reading = Reading::of(
        &caller,
        &state,
        query.cursor.as_deref(),
        query.after,
        query.category.as_deref(),
        query.event_type.as_deref(),
    )
    .await?;
    if let Some(cursor) = last_event_id {
        reading.after = cursor;
    }
    let max = state.config.max_live_subscribers;
    let wakers = || Wakers {
        local: state
            .projector
            .as_ref()
            .and_then(|p| p.signal())
            .map(|s| s.subscribe()),
        remote: state.projector.as_ref().map(|p| {
            let store = p.store().clone();
            std::sync::Arc::new(move || store.wakeups())
                as std::sync::Arc<dyn Fn() -> futures::stream::BoxStream<'static, ()> + Send + Sync>
        }),
        poll: state.config.progress_poll,
    };
    let subscription = state
        .tails
        .subscribe(&reading.log, wakers, max)
        .await?
        .map_err(|e| ApiError::new(Code::TooManySubscribers, e.to_string()))?;
    let heartbeat = state.config.live_heartbeat;
    let draining = draining.map(|Extension(d)| d);
    let items = follow(reading, subscription, heartbeat, draining, seconds);
    let ndjson = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(NDJSON));
    if ndjson {
        let lines = items.map(|item| {
            let line = match item {
                Item::Event(event) => format!("{}\n", event.json),
                Item::Heartbeat | Item::Shutdown => "\n".to_string(),
            };
            Ok::<Bytes, Infallible>(Bytes::from(line))
        });
        let mut response = Body::from_stream(lines).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(response);
    }
    let events = items.filter_map(|item| async move {
        match item {
            Item::Event(event) => Some(Ok::<Event, Infallible>(
                Event::default()
                    .id(event.event.cursor.to_string())
                    .event("event")
                    .data(&event.json),
            )),
            Item::Heartbeat => None,
            Item::Shutdown => Some(Ok(Event::default()
                .event("shutdown")
                .retry(RECONNECT_AFTER)
                .data(
                    json!({"message": "the server is shutting down: reconnect with Last-Event-ID"})
                        .to_string(),
                ))),
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response())
}

/// Completes after `limit`, or never.
async fn expired(limit: Option<tokio::time::Instant>) {
    match limit {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The items of one live stream: pages from the database until caught up, then events from
/// the shared tail; back to the database whenever the tail has moved past it.
fn follow(
    reading: Reading,
    mut tail: Subscription,
    heartbeat: Duration,
    mut draining: Option<Draining>,
    seconds: Option<Duration>,
) -> impl Stream<Item = Item> + Send + 'static {
    let Reading { log, after, filter } = reading;
    let until = seconds.map(|s| tokio::time::Instant::now() + s);
    async_stream::stream! {
        let mut cursor: LogCursor = after;
        let mut retry = RETRY;
        loop {
            // From the database, until a page comes back short.
            let page = tokio::select! {
                page = log.read_events(cursor, &filter, PAGE) => page,
                () = shutting_down(&mut draining) => { yield Item::Shutdown; return; }
                () = expired(until) => return,
            };
            let events = match page {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(error = &error as &dyn std::error::Error, "live log: reading the log failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = shutting_down(&mut draining) => { yield Item::Shutdown; return; }
                        () = expired(until) => return,
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            };
            retry = RETRY;
            let short = events.len() < PAGE;
            for event in events {
                cursor = event.cursor;
                yield Item::Event(Outgoing::new(event));
            }
            if !short {
                continue;
            }
            // From the tail, until it has moved past this stream.
            loop {
                match tail.after(cursor, &filter, PAGE) {
                    Found::Behind => break,
                    Found::Events(events, reached) => {
                        let full = events.len() == PAGE;
                        for event in events {
                            yield Item::Event(event);
                        }
                        cursor = reached;
                        if full {
                            continue;
                        }
                    }
                }
                tokio::select! {
                    () = tail.grown() => {}
                    () = tokio::time::sleep(heartbeat) => yield Item::Heartbeat,
                    () = shutting_down(&mut draining) => { yield Item::Shutdown; return; }
                    () = expired(until) => return,
                }
            }
            // Behind the tail: wait a moment if the database had nothing more either (the
            // tail may be ahead of what the database reads below its horizon).
            tokio::select! {
                () = tail.grown() => {}
                () = tokio::time::sleep(RETRY) => {}
                () = shutting_down(&mut draining) => { yield Item::Shutdown; return; }
                () = expired(until) => return,
            }
        }
    }
}
