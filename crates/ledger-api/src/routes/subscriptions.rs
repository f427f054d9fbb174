//! `/v1/subscriptions/{name}`: durable named subscriptions and consumer groups for projection
//! jobs in any language (see `subscriptions`): define one, read a member's events from its
//! stored checkpoint, move the checkpoint forward.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger_core::{LogCursor, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Writer};
use crate::context::RequestContext;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{
    ApiPath, ApiQuery, RawBody, from_object, json_object, page_limit, whole_numbers,
};
use crate::routes::events::parse_cursor;
use crate::state::AppState;
use crate::views::LogEventSchema;
use ledger_projector::subscription::{self as subs, Checkpoint, Definition};

/// Which events a subscription delivers, and to how many members.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Definition)]
#[allow(dead_code)]
pub(crate) struct DefinitionSchema {
    /// Only streams of these categories (empty or absent: every category).
    #[serde(default)]
    categories: Vec<String>,
    /// Only events of these types (empty or absent: every type).
    #[serde(default)]
    types: Vec<String>,
    /// Workers of the consumer group, 1 to 1024 (default 1).
    #[serde(default)]
    members: u32,
}

/// A subscription as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// Its name.
    pub name: String,
    /// What it delivers, to how many members.
    #[schema(value_type = DefinitionSchema)]
    pub definition: Definition,
}

/// Which member reads, and how much.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemberQuery {
    /// This worker's index in the consumer group, 0 to `members - 1` (default 0).
    pub member: Option<u32>,
    /// The group's size as this worker knows it; refused unless it is the subscription's.
    pub members: Option<u32>,
    /// Most events to return (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A member's page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberPage {
    /// The member's stored checkpoint: the page starts after it.
    pub checkpoint: String,
    /// The member's events, in the log's order.
    #[schema(value_type = Vec<LogEventSchema>)]
    pub events: Vec<ledger_core::LogEvent>,
    /// Ack this once the page is processed: it also skips the other members' events read.
    pub next_cursor: String,
    /// Whether the page reached the end of the log.
    pub caught_up: bool,
}

/// An ack.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// The member acking (default 0).
    #[serde(default)]
    pub member: u32,
    /// Everything up to this cursor is processed (a `next_cursor` or an event's `cursor`).
    pub cursor: String,
}

/// A member's checkpoint after an ack.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckView {
    /// The member.
    pub member: u32,
    /// Its checkpoint now.
    pub checkpoint: String,
    /// Whether this ack moved it (an ack at or behind the checkpoint changes nothing).
    pub moved: bool,
}

/// Creates a subscription (or confirms an identical one).
#[utoipa::path(
    put,
    path = "/v1/subscriptions/{name}",
    tag = "subscriptions",
    request_body = DefinitionSchema,
    params(("name" = String, Path, description = "1 to 63 of a-z, 0-9 and _")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = SubscriptionView),
        (status = 200, description = "It exists with this very definition", body = SubscriptionView),
        (status = 400, description = "`invalid_json` or `invalid_path`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 409, description = "`subscription_exists` with another definition", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn define(
    caller: Writer,
    ctx: RequestContext,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    subs::check_name(&name)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            Code::InvalidJson,
            "send the subscription's definition as a JSON object, e.g. {\"categories\": [\"tenant\"]}",
        ));
    }
    let mut object = json_object(&body)?;
    whole_numbers(&mut object, &["members"]);
    let definition: Definition = from_object(object)?;
    definition.check()?;
    let exists = |found: &Definition| {
        if *found == definition {
            Ok((
                StatusCode::OK,
                Json(SubscriptionView {
                    name: name.clone(),
                    definition: definition.clone(),
                }),
            )
                .into_response())
        } else {
            Err(ApiError::new(
                Code::SubscriptionExists,
                format!("subscription {name} exists with another definition; choose another name"),
            ))
        }
    };
    if let Some(found) = subs::definition(state.store.as_ref(), &name).await? {
        return exists(&found);
    }
    let append = subs::define(&name, &definition, Value::Object(ctx.metadata(&caller)));
    match state.store.append_multi(vec![append]).await {
        Ok(_) => Ok((
            StatusCode::CREATED,
            Json(SubscriptionView { name, definition }),
        )
            .into_response()),
        Err(StoreError::Conflict(_)) => {
            match subs::definition(state.store.as_ref(), &name).await? {
                Some(found) => exists(&found),
                None => Err(StoreError::backend("a subscription definition vanished").into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A member's events after its stored checkpoint.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{name}/events",
    tag = "subscriptions",
    params(("name" = String, Path, description = "The subscription"), MemberQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The member's next events; process them, then ack `next_cursor` (or append the results with it as `ack`)", body = MemberPage),
        (status = 400, description = "`invalid_query` or `invalid_path`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 404, description = "`subscription_not_found`", body = ErrorBody),
        (status = 409, description = "`group_mismatch`: `member` or `members` does not fit the subscription's group", body = ErrorBody),
        (status = 503, description = "`log_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<MemberQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    caller.require_admin()?;
    subs::check_name(&name)?;
    let limit = page_limit(query.limit, &state.config)?;
    let log = state.log()?;
    let definition = subs::existing(state.store.as_ref(), &name).await?;
    let member = definition.member(query.member.unwrap_or(0), query.members)?;
    let from = subs::checkpoint(state.store.as_ref(), &name, member).await?;
    let page = subs::member_page(log.as_ref(), &definition, member, from.cursor, limit).await?;
    Ok(Json(MemberPage {
        checkpoint: from.cursor.to_string(),
        events: page.events,
        next_cursor: page.next.to_string(),
        caught_up: page.caught_up,
    }))
}

/// Moves a member's checkpoint forward.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{name}/ack",
    tag = "subscriptions",
    request_body = AckBody,
    params(("name" = String, Path, description = "The subscription")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The member's checkpoint (moved forward, or already at or past the cursor)", body = AckView),
        (status = 400, description = "`invalid_json` or `invalid_path`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 404, description = "`subscription_not_found`", body = ErrorBody),
        (status = 409, description = "`position_not_reached` (the cursor names no event of the log) or `group_mismatch`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 503, description = "`log_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn ack(
    caller: Writer,
    ctx: RequestContext,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    RawBody(body): RawBody,
) -> Result<Json<AckView>, ApiError> {
    caller.require_admin()?;
    subs::check_name(&name)?;
    let mut object = json_object(&body)?;
    whole_numbers(&mut object, &["member"]);
    let input: AckBody = from_object(object)?;
    let cursor = parse_cursor("cursor", &input.cursor).map_err(|_| {
        ApiError::new(
            Code::InvalidBody,
            "cursor must be 32 hex digits: a next_cursor or an event's cursor",
        )
    })?;
    let definition = subs::existing(state.store.as_ref(), &name).await?;
    let member = definition.member(input.member, None)?;
    require_known(&state, cursor).await?;
    loop {
        let from: Checkpoint = subs::checkpoint(state.store.as_ref(), &name, member).await?;
        if cursor <= from.cursor {
            return Ok(Json(AckView {
                member,
                checkpoint: from.cursor.to_string(),
                moved: false,
            }));
        }
        let append = subs::ack(
            &name,
            member,
            from,
            cursor,
            Value::Object(ctx.metadata(&caller)),
        );
        match state.store.append_multi(vec![append]).await {
            Ok(_) => {
                return Ok(Json(AckView {
                    member,
                    checkpoint: cursor.to_string(),
                    moved: true,
                }));
            }
            // Another ack moved it meanwhile: look again (forward only).
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Refuses an ack of a cursor that names no event of the log (409 `position_not_reached`).
pub(crate) async fn require_known(state: &AppState, cursor: LogCursor) -> Result<(), ApiError> {
    if subs::known(state.log()?.as_ref(), cursor).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::PositionNotReached,
            "this cursor names no event of the log; ack a cursor a page handed out",
        ))
    }
}
