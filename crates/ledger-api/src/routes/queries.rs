//! The read-model queries: `GET /v1/tenants`, `GET /v1/locks`, `GET /v1/pending-syncs`.
//!
//! Each reads one projection's live table, a page at a time (`limit`, `cursor`), in key order.
//! A tenant token sees only its own tenant's rows. `min_position` (the `position` a write
//! returned) makes the query wait until the projection has applied that event, so a client
//! reads its own writes; 503 `projection_behind` when it does not within the configured wait,
//! and 409 `position_not_reached` at once for a position the log does not hold.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use ledger_core::Position;
use ledger_domain::{Phase, SyncStatus};
use ledger_projections::{
    Filter, Kind, LockRow, PendingSyncRow, ProjectionError, Projector, Query, RowKey, Rows, Slot,
    TenantPhaseRow,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, hex};
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{ApiQuery, page_limit, position_param};
use crate::quote::quote;
use crate::state::AppState;
use crate::views::{PhaseSchema, SyncStatusSchema};

/// Paging and read-your-writes parameters every list takes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Most items to return (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until the projection has applied the event at this position (the `position` a
    /// write returned) before answering.
    pub min_position: Option<u64>,
}

/// `GET /v1/tenants` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantsQuery {
    /// Only tenants in this phase, e.g. `PAYMENT_VERIFIED`.
    pub phase: Option<String>,
    /// Most items to return (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until `tenant_phase` has applied the event at this position.
    pub min_position: Option<u64>,
}

/// `GET /v1/locks` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LocksQuery {
    /// `true`: only locks active now (not released, not expired); otherwise every lock.
    pub active: Option<bool>,
    /// Most items to return (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until `onboarding_locks` has applied the event at this position.
    pub min_position: Option<u64>,
}

/// `GET /v1/pending-syncs` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncsQuery {
    /// Only syncs with this status: `pending_sync`, `synced` or `failed`.
    pub status: Option<String>,
    /// Most items to return (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until `pending_syncs` has applied the event at this position.
    pub min_position: Option<u64>,
}

/// A tenant as the `tenant_phase` projection shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantItem {
    /// The tenant.
    pub tenant_id: String,
    /// Its slug.
    pub slug: Option<String>,
    /// Its display name.
    pub name: Option<String>,
    /// The furthest phase reached.
    #[schema(value_type = PhaseSchema)]
    pub phase: Phase,
    /// When the payment was verified.
    pub verifying_payment_at: Option<DateTime<Utc>>,
    /// When the organisation was created.
    pub creating_organization_at: Option<DateTime<Utc>>,
    /// When the workspace was provisioned.
    pub setting_up_workspace_at: Option<DateTime<Utc>>,
    /// When the API key was issued.
    pub generating_api_key_at: Option<DateTime<Utc>>,
    /// When the finalising stage completed.
    pub finalizing_at: Option<DateTime<Utc>>,
    /// When onboarding completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// The seq of the tenant stream's last event applied.
    pub last_seq: u64,
    /// The time of that event.
    pub updated_at: DateTime<Utc>,
}

impl From<TenantPhaseRow> for TenantItem {
    fn from(r: TenantPhaseRow) -> Self {
        Self {
            tenant_id: r.tenant_id,
            slug: r.slug,
            name: r.name,
            phase: r.phase,
            verifying_payment_at: r.verifying_payment_at,
            creating_organization_at: r.creating_organization_at,
            setting_up_workspace_at: r.setting_up_workspace_at,
            generating_api_key_at: r.generating_api_key_at,
            finalizing_at: r.finalizing_at,
            completed_at: r.completed_at,
            last_seq: r.last_seq,
            updated_at: r.updated_at,
        }
    }
}

/// A tenant's onboarding lock as the `onboarding_locks` projection shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockItem {
    /// The tenant.
    pub tenant_id: String,
    /// Who took it.
    pub holder: String,
    /// When this holder took it.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
    /// Why it was released.
    pub release_reason: Option<String>,
    /// Whether it holds now: not released and not expired.
    pub active: bool,
}

impl LockItem {
    fn new(r: LockRow, now: DateTime<Utc>) -> Self {
        Self {
            active: r.is_active(now),
            tenant_id: r.tenant_id,
            holder: r.holder,
            acquired_at: r.acquired_at,
            expires_at: r.expires_at,
            released_at: r.released_at,
            release_reason: r.release_reason,
        }
    }
}

/// One tenant's sync with one downstream target, from the `pending_syncs` projection.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingSyncItem {
    /// The tenant.
    pub tenant_id: String,
    /// The downstream system.
    pub target: String,
    /// `pending_sync`, `synced` or `failed`.
    #[schema(value_type = SyncStatusSchema)]
    pub status: SyncStatus,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Retries started since the current run of failures began.
    pub retry_count: u32,
    /// The last error (or why it was given up).
    pub last_error: Option<String>,
    /// When the current run of failures began.
    pub first_failed_at: Option<DateTime<Utc>>,
    /// When anything last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<PendingSyncRow> for PendingSyncItem {
    fn from(r: PendingSyncRow) -> Self {
        Self {
            tenant_id: r.tenant_id,
            target: r.target,
            status: r.status,
            attempts: r.attempts,
            retry_count: r.retry_count,
            last_error: r.last_error,
            first_failed_at: r.first_failed_at,
            updated_at: r.updated_at,
        }
    }
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    /// The tenants, by id.
    pub items: Vec<TenantItem>,
    /// Send as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of locks.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockPage {
    /// The locks, by tenant id.
    pub items: Vec<LockItem>,
    /// Send as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of the compensation queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingSyncPage {
    /// The syncs, by tenant id and target.
    pub items: Vec<PendingSyncItem>,
    /// Send as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The projector, or 503 `projections_unavailable`.
pub(crate) fn projector(state: &AppState) -> Result<&Projector, ApiError> {
    state.projector.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::ProjectionsUnavailable,
            "this server does not serve the projections; ask the operator to start it with them",
        )
    })
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Store(s) => ApiError::Store(s),
            ProjectionError::Behind {
                kind,
                wanted,
                checkpoint,
            } => ApiError::new(
                Code::ProjectionBehind,
                format!(
                    "{kind} has not applied position {wanted} yet (it is at {checkpoint}); retry in a moment"
                ),
            )
            .with("projection", kind)
            .with("min_position", wanted.0)
            .with("checkpoint", checkpoint.0),
            other => ApiError::internal(other),
        }
    }
}

/// Longest pause between two looks at whether the log holds a position waited for.
const MAX_LOOK_INTERVAL: Duration = Duration::from_secs(1);

/// Waits until `kind` has applied the event at `position`, at most `timeout` (then 503
/// `projection_behind`). A position the log does not hold is refused at once with 409
/// `position_not_reached` and the log's head: waiting for it could never succeed.
///
/// A projection that has read every event of the log (nothing after its checkpoint) without
/// reaching `position` proves the log does not hold it. The count of events after the
/// checkpoint reads every committed event, so a position a write of this client returned is
/// always counted and never refused; on PostgreSQL that includes transactions the projection
/// cannot read yet because an older one is still running.
async fn wait_for(
    projector: &Projector,
    kind: Kind,
    position: Position,
    timeout: Duration,
) -> Result<(), ApiError> {
    if position == Position::START {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::ZERO;
    loop {
        let wait = pause.min(deadline.saturating_duration_since(Instant::now()));
        match projector.wait_for(kind, position, wait).await {
            Ok(()) => return Ok(()),
            Err(ProjectionError::Behind { checkpoint, .. })
                if projector.store().events_after(checkpoint).await? == 0 =>
            {
                return Err(ApiError::new(
                    Code::PositionNotReached,
                    format!(
                        "position {position} is not in the log (yet): the log ends at position {checkpoint}; send a position a write returned"
                    ),
                )
                .with("min_position", position.0)
                .with("head", checkpoint.0));
            }
            Err(e @ ProjectionError::Behind { .. }) if Instant::now() >= deadline => {
                return Err(e.into());
            }
            Err(ProjectionError::Behind { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        pause = (pause * 2).clamp(Duration::from_millis(10), MAX_LOOK_INTERVAL);
    }
}

/// A cursor: the hex of the last key (`tenant` or `tenant\ntarget`).
fn encode_cursor(key: &RowKey) -> String {
    let text = match &key.target {
        Some(t) => format!("{}\n{t}", key.tenant_id),
        None => key.tenant_id.clone(),
    };
    hex(text.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<RowKey, ApiError> {
    let bad = || {
        ApiError::new(
            Code::InvalidQuery,
            "cursor is not a cursor this API returned; send the next_cursor of the previous page",
        )
    };
    if !cursor.len().is_multiple_of(2) || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(match text.split_once('\n') {
        Some((tenant, target)) => RowKey::target(tenant, target),
        None => RowKey::tenant(text),
    })
}

/// Runs a paged query for `caller`, after waiting for `min_position`.
async fn page(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    filter: Filter,
    paging: Paging,
) -> Result<(Rows, Option<String>), ApiError> {
    let projector = projector(state)?;
    let limit = page_limit(paging.limit, &state.config)?;
    let after = paging.cursor.as_deref().map(decode_cursor).transpose()?;
    if let Some(p) = position_param("min_position", paging.min_position)? {
        wait_for(projector, kind, Position(p), state.config.projection_wait).await?;
    }
    let tenant = match caller {
        Caller::Admin { .. } => None,
        Caller::Tenant(id) => Some(id.to_string()),
    };
    let query = Query {
        kind,
        slot: Slot::Live,
        tenant,
        filter,
        after,
        limit: limit + 1,
    };
    let mut rows = projector.store().query(&query).await?;
    let mut next = None;
    if rows.len() > limit {
        truncate(&mut rows, limit);
        next = rows.keys().last().map(encode_cursor);
    }
    Ok((rows, next))
}

fn truncate(rows: &mut Rows, n: usize) {
    match rows {
        Rows::TenantPhase(r) => r.truncate(n),
        Rows::OnboardingLocks(r) => r.truncate(n),
        Rows::PendingSyncs(r) => r.truncate(n),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    name: &str,
    text: &str,
    allowed: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        ApiError::new(
            Code::InvalidQuery,
            format!("{name} must be one of {allowed}, not {}", quote(text)),
        )
    })
}

/// Tenants with their onboarding phase, from the `tenant_phase` projection (a tenant token
/// sees only its own tenant).
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "queries",
    params(TenantsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of tenants", body = TenantPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`position_not_reached`: `min_position` is not in the log (yet); with `head`, the log's last position", body = ErrorBody),
        (status = 503, description = "`projection_behind` (with `checkpoint`), `projections_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn list_tenants(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TenantsQuery>,
) -> Result<Json<TenantPage>, ApiError> {
    let filter = match q.phase.as_deref() {
        Some(p) => Filter::Phase(parse(
            "phase",
            &p.to_ascii_uppercase(),
            "NOT_STARTED, PAYMENT_VERIFIED, ORGANIZATION_CREATED, WORKSPACE_PROVISIONED, API_KEY_ISSUED, COMPLETED",
        )?),
        None => Filter::All,
    };
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor,
        min_position: q.min_position,
    };
    let (rows, next_cursor) = page(&state, &caller, Kind::TenantPhase, filter, paging).await?;
    let Rows::TenantPhase(rows) = rows else {
        return Err(ApiError::internal("tenant_phase answered other rows"));
    };
    Ok(Json(TenantPage {
        items: rows.into_iter().map(TenantItem::from).collect(),
        next_cursor,
    }))
}

/// Onboarding locks, from the `onboarding_locks` projection; `active` is judged at the time of
/// the request (a tenant token sees only its own tenant).
#[utoipa::path(
    get,
    path = "/v1/locks",
    tag = "queries",
    params(LocksQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of locks", body = LockPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`position_not_reached`: `min_position` is not in the log (yet); with `head`, the log's last position", body = ErrorBody),
        (status = 503, description = "`projection_behind` (with `checkpoint`), `projections_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn list_locks(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LocksQuery>,
) -> Result<Json<LockPage>, ApiError> {
    let now = (state.clock)();
    let filter = match q.active {
        Some(true) => Filter::ActiveAt(now),
        _ => Filter::All,
    };
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor,
        min_position: q.min_position,
    };
    let (rows, next_cursor) = page(&state, &caller, Kind::OnboardingLocks, filter, paging).await?;
    let Rows::OnboardingLocks(rows) = rows else {
        return Err(ApiError::internal("onboarding_locks answered other rows"));
    };
    let items = rows.into_iter().map(|r| LockItem::new(r, now)).collect();
    Ok(Json(LockPage { items, next_cursor }))
}

/// The compensation queue, from the `pending_syncs` projection (a tenant token sees only its
/// own tenant).
#[utoipa::path(
    get,
    path = "/v1/pending-syncs",
    tag = "queries",
    params(SyncsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of syncs", body = PendingSyncPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`position_not_reached`: `min_position` is not in the log (yet); with `head`, the log's last position", body = ErrorBody),
        (status = 503, description = "`projection_behind` (with `checkpoint`), `projections_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn list_pending_syncs(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SyncsQuery>,
) -> Result<Json<PendingSyncPage>, ApiError> {
    let filter = match q.status.as_deref() {
        Some(s) => Filter::Status(parse("status", s, "pending_sync, synced, failed")?),
        None => Filter::All,
    };
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor,
        min_position: q.min_position,
    };
    let (rows, next_cursor) = page(&state, &caller, Kind::PendingSyncs, filter, paging).await?;
    let Rows::PendingSyncs(rows) = rows else {
        return Err(ApiError::internal("pending_syncs answered other rows"));
    };
    Ok(Json(PendingSyncPage {
        items: rows.into_iter().map(PendingSyncItem::from).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for key in [RowKey::tenant("0190-ab"), RowKey::target("t-1", "crm\nx")] {
            assert_eq!(decode_cursor(&encode_cursor(&key)).unwrap(), key);
        }
        for bad in ["zz", "abc", "+f"] {
            assert_eq!(decode_cursor(bad).unwrap_err().code(), Code::InvalidQuery);
        }
    }
}
