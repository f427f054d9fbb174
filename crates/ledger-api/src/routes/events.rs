//! `GET /v1/events`: the global log page by page, for programs that keep a cursor (projection
//! jobs in any language, auditors' exports).

use axum::Json;
use axum::extract::State;
use ledger_commands::{slug_stream, tenant_stream};
use std::sync::Arc;

use ledger_core::{EventFilter, LogCursor, LogReader, Position, StoreError};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{ApiQuery, page_limit, position_param};
use crate::quote::excerpt;
use crate::state::AppState;
use crate::views::LogPageView;

/// Most names one list filter of a query may hold.
const MAX_LIST: usize = 64;

/// Which part of the log to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Resume after this cursor: the `next_cursor` of the previous page (or any event's
    /// `cursor`). Absent: from the start.
    pub cursor: Option<String>,
    /// Resume after the event at this position instead (0: from the start). Exact, but keep
    /// the cursors: on PostgreSQL positions do not grow along the log's order.
    pub after: Option<u64>,
    /// Only streams of these categories, comma-separated (e.g. `tenant,slug`).
    pub category: Option<String>,
    /// Only events of these types, comma-separated.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Most events to return (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Reads a page of the global log in the store's gap-free order.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "log",
    params(LogQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the log. Resume from `next_cursor` (never from a position): a consumer that keeps only its last cursor never skips nor repeats an event, also one that commits late. A tenant token reads only its tenant's streams (`tenant-<id>` and its slug claim).", body = LogPageView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`position_not_reached`: `after` is no event's position in the log (yet)", body = ErrorBody),
        (status = 503, description = "`log_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn read_log(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<LogPageView>, ApiError> {
    let limit = page_limit(query.limit, &state.config)?;
    let reading = Reading::of(
        &caller,
        &state,
        query.cursor.as_deref(),
        query.after,
        query.category.as_deref(),
        query.event_type.as_deref(),
    )
    .await?;
    let events = reading
        .log
        .read_events(reading.after, &reading.filter, limit)
        .await?;
    let next_cursor = events.last().map_or(reading.after, |e| e.cursor);
    Ok(Json(LogPageView {
        caught_up: events.len() < limit,
        events,
        next_cursor,
    }))
}

/// What a reader of the log asked for: where to start, which events, from which log.
pub(crate) struct Reading {
    /// The log.
    pub(crate) log: Arc<dyn LogReader>,
    /// Start after this cursor.
    pub(crate) after: LogCursor,
    /// The events wanted (a tenant token's own streams only).
    pub(crate) filter: EventFilter,
}

impl Reading {
    /// The reading a request asks for: `cursor` or `after` (not both), the list filters
    /// `category` and `type`, and the caller's own streams for a tenant token.
    pub(crate) async fn of(
        caller: &Caller,
        state: &AppState,
        cursor: Option<&str>,
        after: Option<u64>,
        category: Option<&str>,
        event_type: Option<&str>,
    ) -> Result<Self, ApiError> {
        let log = state.log()?;
        let mut filter = EventFilter {
            categories: names("category", category)?,
            types: names("type", event_type)?,
            streams: Vec::new(),
        };
        if let Caller::Tenant(tenant) = caller {
            filter.streams = tenant_streams(state, *tenant).await?;
        }
        let after = match (cursor, after) {
            (Some(_), Some(_)) => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    "send either cursor or after, not both",
                ));
            }
            (Some(cursor), None) => parse_cursor("cursor", cursor)?,
            (None, Some(after)) => {
                let after = position_param("after", Some(after))?.unwrap_or(0);
                match log.cursor_at(Position(after)).await {
                    Err(StoreError::UnknownPosition(_)) => {
                        return Err(ApiError::new(
                            Code::PositionNotReached,
                            format!(
                                "after={after} is no event's position in the log (yet); resume from a cursor instead"
                            ),
                        )
                        .with("after", after));
                    }
                    found => found?,
                }
            }
            (None, None) => LogCursor::START,
        };
        Ok(Self { log, after, filter })
    }
}

/// A cursor sent as `what`.
pub(crate) fn parse_cursor(what: &str, text: &str) -> Result<LogCursor, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            Code::InvalidQuery,
            format!(
                "{what} must be the 32 hex digits of a `next_cursor` or an event's `cursor`, not {}",
                excerpt(text)
            ),
        )
    })
}

/// The names of a comma-separated list filter (`None`: no filter).
fn names(param: &str, text: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = text.split(',').map(str::to_string).collect();
    if names.iter().any(String::is_empty) || names.len() > MAX_LIST {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!(
                "{param} must be 1 to {MAX_LIST} comma-separated names without empty ones, not {}",
                excerpt(text)
            ),
        ));
    }
    Ok(names)
}

/// The streams a tenant token reads: its tenant's stream and the slug claim its
/// registration names.
async fn tenant_streams(state: &AppState, tenant: Uuid) -> Result<Vec<String>, ApiError> {
    let loaded = state.executor.load(tenant).await?;
    let mut streams = vec![tenant_stream(tenant).to_string()];
    if let Some(registration) = &loaded.state.registration
        && let Some(slug) = slug_stream(&registration.slug)
    {
        streams.push(slug.to_string());
    }
    Ok(streams)
}
