//! A tenant's history for people: `GET /v1/tenants/{id}/timeline`, and the `as_of` answer of
//! `GET /v1/tenants/{id}` (its route is in `tenants.rs`).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::history::{Timeline, parse_as_of, tenant_as_of, tenant_timeline};
use crate::input::{ApiPath, ApiQuery, page_limit, position_param, tenant_id};
use crate::state::AppState;

/// `GET /v1/tenants/{id}` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// The tenant as it was at this instant (RFC 3339, e.g. `2026-01-20T14:03:12Z`): folded
    /// from the events recorded up to then, with its lock and pending syncs then
    /// (`TenantAsOf`). 404 `tenant_not_found` when it was not registered yet.
    pub as_of: Option<String>,
}

/// The answer of `GET /v1/tenants/{id}?as_of=`: the tenant as it was at that instant.
pub(crate) async fn as_of_answer(
    state: &AppState,
    tenant_id: Uuid,
    as_of: &str,
) -> Result<Response, ApiError> {
    let at = parse_as_of("as_of", as_of)?;
    let view = tenant_as_of(state.store.as_ref(), tenant_id, at, &state.config.policy).await?;
    Ok(Json(view).into_response())
}

/// `GET /v1/tenants/{id}/timeline` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// The first seq to list (default 1).
    pub from_seq: Option<u64>,
    /// Most entries to return (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The tenant's timeline: one entry per event of its stream, in words.
///
/// In seq order, each entry says what happened, who did it (the actor, token and
/// on-behalf-of its metadata records), when it was recorded, the phase after it and its
/// correlation id. Only events are listed: a refused command (`lock_held`,
/// `invalid_transition`, a conflict, ...) appends no event and so appears in no timeline.
/// A tenant token reads only its own tenant's.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/timeline",
    tag = "tenants",
    params(
        ("id" = Uuid, Path, description = "The tenant id"),
        TimelineQuery,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the timeline", body = Timeline),
        (status = 400, description = "`invalid_tenant_id` or `invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's token", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn timeline(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let tenant_id = tenant_id(&id)?;
    caller.require_tenant(tenant_id)?;
    let limit = page_limit(q.limit, &state.config)?;
    let from_seq = position_param("from_seq", q.from_seq)?.unwrap_or(1);
    let timeline = tenant_timeline(state.store.as_ref(), tenant_id, from_seq, limit).await?;
    Ok(Json(timeline))
}
