//! `GET /v1/projections` (status of every read model), `GET /v1/projections/{name}` and
//! `POST /v1/projections/{name}/rebuild` (start an online rebuild), admin only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use ledger_projector::{ProjectionStatus, RebuildStatus, State as ProjectionState};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Writer};
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::ApiPath;
use crate::quote::{bound_quotes, excerpt};
use crate::routes::queries::projector;
use crate::routes::tenants::header;
use crate::state::AppState;

/// How far a projection's live tables are.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ProjectionState)]
#[allow(dead_code)]
pub(crate) enum StateSchema {
    /// Applied up to (nearly) the end of the log.
    Live,
    /// A rebuild is filling fresh tables; the live ones keep serving.
    Rebuilding,
    /// More than 1000 events behind, or not created yet.
    CatchingUp,
    /// This server's runner fails to apply the next events (`error` has the code) and retries.
    Failing,
}

/// A read model's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionView {
    /// The read model: `tenant_phase`, `onboarding_locks`, `pending_syncs` or `onboarding_funnel`.
    pub name: String,
    /// The version of its live tables.
    pub version: u32,
    /// The position of the last event applied (0: none).
    pub checkpoint: u64,
    /// Events of the log after the checkpoint.
    pub lag: u64,
    /// `live`, `rebuilding`, `catching_up` or `failing`.
    #[schema(value_type = StateSchema)]
    pub state: ProjectionState,
    /// While `failing`: the code of the runner's last failure (e.g. `unavailable`).
    pub error: Option<String>,
    /// Events applied to the live tables.
    pub events: u64,
    /// The runner that applied the last batch.
    pub owner: Option<String>,
    /// The rebuild in progress, if any.
    pub rebuild: Option<RebuildView>,
}

/// A rebuild in progress (or interrupted: it resumes from its checkpoint).
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildView {
    /// The version being built.
    pub version: u32,
    /// The position of the last event applied to the fresh tables.
    pub checkpoint: u64,
    /// Events applied so far.
    pub done: u64,
    /// Events in the log.
    pub total: u64,
    /// Whether this server is running it right now.
    pub running: bool,
    /// Why it stopped, when it failed on this server.
    pub error: Option<String>,
}

impl From<ProjectionStatus> for ProjectionView {
    fn from(s: ProjectionStatus) -> Self {
        Self {
            name: s.name.to_string(),
            version: s.version,
            checkpoint: s.checkpoint,
            lag: s.lag,
            state: s.state,
            error: s.error.map(str::to_string),
            events: s.events,
            owner: s.owner,
            rebuild: s.rebuild.map(|r: RebuildStatus| RebuildView {
                version: r.version,
                checkpoint: r.checkpoint,
                done: r.done,
                total: r.total,
                running: r.running,
                error: r.error,
            }),
        }
    }
}

/// Every read model's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionList {
    /// The projections.
    pub items: Vec<ProjectionView>,
    /// Always `null`: there is one page.
    pub next_cursor: Option<String>,
}

/// An online rebuild that was started (or was already running).
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildStarted {
    /// The projection.
    pub name: String,
    /// Where to follow it: `GET` shows its progress, then the new checkpoint.
    pub status_url: String,
    /// False when a rebuild of this projection was already running on this server.
    pub started: bool,
}

fn model(name: &str) -> Result<&'static str, ApiError> {
    match ledger_read_models::catalog().get(name) {
        Ok(model) => Ok(model.schema().name),
        Err(e) => Err(ApiError::new(
            Code::UnknownProjection,
            bound_quotes(&e.to_string()).into_owned(),
        )
        .with("name", excerpt(name))),
    }
}

/// The status of every projection: version, checkpoint, lag and state (admin).
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = "projections",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every projection", body = ProjectionList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 503, description = "`projections_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn list_projections(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<ProjectionList>, ApiError> {
    caller.require_all_tenants()?;
    let items = projector(&state)?
        .status()
        .await?
        .into_iter()
        .map(ProjectionView::from)
        .collect();
    Ok(Json(ProjectionList {
        items,
        next_cursor: None,
    }))
}

/// One projection's status (admin).
#[utoipa::path(
    get,
    path = "/v1/projections/{name}",
    tag = "projections",
    params(("name" = String, Path, description = "A read model: `tenant_phase`, `onboarding_locks`, `pending_syncs` or `onboarding_funnel`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The projection", body = ProjectionView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 404, description = "`unknown_projection`", body = ErrorBody),
        (status = 503, description = "`projections_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn get_projection(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProjectionView>, ApiError> {
    caller.require_all_tenants()?;
    let name = model(&name)?;
    let status = projector(&state)?
        .status()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::internal(format!("no status for {name}")))?;
    Ok(Json(status.into()))
}

/// Starts an online rebuild: the whole log is replayed into fresh tables while the live ones
/// keep serving, then they are swapped in atomically (admin).
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/rebuild",
    tag = "projections",
    params(("name" = String, Path, description = "A read model: `tenant_phase`, `onboarding_locks`, `pending_syncs` or `onboarding_funnel`")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Started (or already running); follow `status_url`", body = RebuildStarted, headers(("Location" = String, description = "The status URL"))),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 404, description = "`unknown_projection`", body = ErrorBody),
        (status = 503, description = "`projections_unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn rebuild(
    caller: Writer,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let name = model(&name)?;
    let started = projector(&state)?.spawn_rebuild(name)?;
    let status_url = format!("/v1/projections/{name}");
    let body = RebuildStarted {
        name: name.to_string(),
        status_url: status_url.clone(),
        started,
    };
    Ok((
        StatusCode::ACCEPTED,
        [(LOCATION, header(&status_url))],
        Json(body),
    )
        .into_response())
}
