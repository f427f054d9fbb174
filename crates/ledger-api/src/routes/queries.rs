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
use chrono::NaiveDate;
use ledger_commands::Opener;
use ledger_core::Position;
use ledger_domain::personal;
use ledger_projector::{Key, ProjectionError, Projector, Record, TableSpec, Value};
use ledger_read_models::{
    FunnelDay, LockFilter, LockItem, Logged, PendingSyncRow, SyncFilter, TenantFilter,
    TenantPhaseRow, onboarding_funnel, onboarding_locks, pending_syncs, tenant_phase,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, hex};
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{ApiQuery, page_limit, position_param};
use crate::quote::quote;
use crate::state::AppState;

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

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    /// The tenants, by id.
    pub items: Vec<TenantPhaseRow>,
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
    pub items: Vec<PendingSyncRow>,
    /// Send as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The projector, or 503 `projections_unavailable`.
pub(crate) fn projector(state: &AppState) -> Result<&Projector<Logged>, ApiError> {
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
                projection,
                wanted,
                checkpoint,
            } => ApiError::new(
                Code::ProjectionBehind,
                format!(
                    "{projection} has not applied position {wanted} yet (it is at {checkpoint}); retry in a moment"
                ),
            )
            .with("projection", projection)
            .with("min_position", wanted.0)
            .with("checkpoint", checkpoint.0),
            other => ApiError::internal(other),
        }
    }
}

/// Longest pause between two looks at whether the log holds a position waited for.
const MAX_LOOK_INTERVAL: Duration = Duration::from_secs(1);

/// Waits until the read model `name` has seen the event at `position`, at most `timeout`
/// (then 503 `projection_behind`). A position beyond the log's last committed event is refused
/// at once with 409 `position_not_reached` and the log's head: waiting for it could never
/// succeed. A position a write of this client returned is committed, so it is never refused,
/// even on PostgreSQL while an older transaction keeps the read models from reading it yet.
pub(crate) async fn wait_for(
    projector: &Projector<Logged>,
    name: &str,
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
        match projector.wait_for(name, position, wait).await {
            Ok(()) => return Ok(()),
            Err(ProjectionError::Behind { .. })
                if projector.log().last_position().await? < position =>
            {
                let head = projector.log().last_position().await?;
                return Err(ApiError::new(
                    Code::PositionNotReached,
                    format!(
                        "position {position} is not in the log (yet): the log ends at position {head}; send a position a write returned"
                    ),
                )
                .with("min_position", position.0)
                .with("head", head.0));
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

/// A cursor: the hex of the last row's key values, joined by newlines.
fn encode_cursor(key: &Key) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|v| match v {
            Value::Text(t) => t.clone(),
            Value::Int(n) => n.to_string(),
            Value::Time(t) => ledger_projector::time_text(*t),
            Value::Null => String::new(),
        })
        .collect();
    hex(parts.join("\n").as_bytes())
}

/// The key a cursor of `table` names.
fn decode_cursor(table: &TableSpec, cursor: &str) -> Result<Key, ApiError> {
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
    // Any hex is a cursor: a page after whatever key it spells (missing trailing parts are
    // empty, so the page starts at the first row past the given ones).
    let text = String::from_utf8_lossy(&bytes);
    let columns = table.key_columns();
    let mut parts = text.splitn(columns.len(), '\n');
    columns
        .iter()
        .map(|column| {
            let part = parts.next().unwrap_or_default();
            match column.ty {
                ledger_projector::ColumnType::Int => {
                    part.parse().map(Value::Int).map_err(|_| bad())
                }
                _ => Ok(Value::text(part)),
            }
        })
        .collect()
}

/// Paging parsed: the page size, and the key to continue after.
struct Page {
    limit: usize,
    after: Option<Key>,
}

/// Checks the paging parameters of a query of `table` and waits for `min_position` in the
/// read model `name`.
async fn prepare(
    state: &AppState,
    name: &str,
    table: &TableSpec,
    paging: &Paging,
) -> Result<Page, ApiError> {
    let projector = projector(state)?;
    let limit = page_limit(paging.limit, &state.config)?;
    let after = paging
        .cursor
        .as_deref()
        .map(|c| decode_cursor(table, c))
        .transpose()?;
    if let Some(p) = position_param("min_position", paging.min_position)? {
        wait_for(projector, name, Position(p), state.config.projection_wait).await?;
    }
    Ok(Page { limit, after })
}

/// The tenant a caller may see (`None`: every tenant).
pub(crate) fn tenant_of(caller: &Caller) -> Option<String> {
    match caller {
        Caller::Admin { .. } | Caller::Auditor { .. } => None,
        Caller::Tenant(id) => Some(id.to_string()),
    }
}

/// Cuts one row more than a page off and names the cursor of the next page.
fn finish<R: Record>(mut rows: Vec<R>, limit: usize) -> (Vec<R>, Option<String>) {
    let mut next = None;
    if rows.len() > limit {
        rows.truncate(limit);
        next = rows.last().map(|r| encode_cursor(&r.key()));
    }
    (rows, next)
}

/// `text` parsed by `parse`, or 400 `invalid_query` listing the `allowed` values.
fn parse<T>(
    name: &str,
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
    allowed: &str,
) -> Result<T, ApiError> {
    parse(text).ok_or_else(|| {
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
    let phase = q
        .phase
        .as_deref()
        .map(|p| {
            parse(
                "phase",
                &p.to_ascii_uppercase(),
                ledger_read_models::parse_phase,
                "NOT_STARTED, PAYMENT_VERIFIED, ORGANIZATION_CREATED, WORKSPACE_PROVISIONED, API_KEY_ISSUED, COMPLETED",
            )
        })
        .transpose()?;
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor,
        min_position: q.min_position,
    };
    let page = prepare(&state, "tenant_phase", &tenant_phase::TABLE, &paging).await?;
    let filter = TenantFilter {
        tenant: tenant_of(&caller),
        phase,
    };
    let store = projector(&state)?.store();
    let rows = tenant_phase::page(store.as_ref(), filter, page.after, page.limit + 1).await?;
    let (mut items, next_cursor) = finish(rows, page.limit);
    let opener = opener(&state, items.iter().map(|r| &r.tenant_id)).await?;
    for row in &mut items {
        opener.open_opt(&row.tenant_id, personal::NAME, &mut row.name);
    }
    Ok(Json(TenantPage { items, next_cursor }))
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
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor,
        min_position: q.min_position,
    };
    let page = prepare(
        &state,
        "onboarding_locks",
        &onboarding_locks::TABLE,
        &paging,
    )
    .await?;
    let filter = LockFilter {
        tenant: tenant_of(&caller),
        active_at: (q.active == Some(true)).then_some(now),
    };
    let store = projector(&state)?.store();
    let rows = onboarding_locks::page(store.as_ref(), filter, page.after, page.limit + 1).await?;
    let (mut rows, next_cursor) = finish(rows, page.limit);
    let opener = opener(&state, rows.iter().map(|r| &r.tenant_id)).await?;
    for row in &mut rows {
        opener.open_text(&row.tenant_id, personal::HOLDER, &mut row.holder);
    }
    let items = rows.into_iter().map(|r| LockItem::at(r, now)).collect();
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
    let status = q
        .status
        .as_deref()
        .map(|s| {
            parse(
                "status",
                s,
                ledger_read_models::parse_status,
                "pending_sync, synced, failed",
            )
        })
        .transpose()?;
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor,
        min_position: q.min_position,
    };
    let page = prepare(&state, "pending_syncs", &pending_syncs::TABLE, &paging).await?;
    let filter = SyncFilter {
        tenant: tenant_of(&caller),
        status,
    };
    let store = projector(&state)?.store();
    let rows = pending_syncs::page(store.as_ref(), filter, page.after, page.limit + 1).await?;
    let (mut items, next_cursor) = finish(rows, page.limit);
    let opener = opener(&state, items.iter().map(|r| &r.tenant_id)).await?;
    for row in &mut items {
        opener.open_opt(&row.tenant_id, personal::LAST_ERROR, &mut row.last_error);
    }
    Ok(Json(PendingSyncPage { items, next_cursor }))
}

/// The keys to open the personal fields read models copied from these tenants' events (none
/// on a server without keys: sealed fields then read `[erased]`).
pub(crate) async fn opener<'a>(
    state: &AppState,
    tenants: impl Iterator<Item = &'a String>,
) -> Result<Opener, ApiError> {
    match state.vault() {
        Some(vault) => Ok(vault.opener(tenants.cloned()).await?),
        None => Ok(Opener::default()),
    }
}

/// `GET /v1/funnel` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FunnelQuery {
    /// The first UTC day, `YYYY-MM-DD` (default: the first day with events).
    pub from: Option<String>,
    /// The last UTC day, `YYYY-MM-DD`, included (default: the last day with events).
    pub to: Option<String>,
    /// Most days to return (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until `onboarding_funnel` has applied the event at this position (ignored with
    /// `as_of`).
    pub min_position: Option<u64>,
    /// The funnel as it was at this instant (RFC 3339): folded from the log's events recorded
    /// up to then rather than read from the live table.
    pub as_of: Option<String>,
}

/// A page of the funnel.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelPage {
    /// The instant of an `as_of` query, as it was given (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The days, in order; days with no onboarding event are left out.
    pub items: Vec<FunnelDay>,
    /// Send as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The onboarding funnel per UTC day of event time, from the `onboarding_funnel` read model:
/// registrations, first arrivals in each phase, completions (a re-completion never counts
/// twice), backfills (never counted as progress) and time to complete (admin). With `as_of`,
/// the funnel as it was at that instant, computed by the read model's own `apply` from the
/// log's events recorded up to then (the whole log is read: slower than the live table).
#[utoipa::path(
    get,
    path = "/v1/funnel",
    tag = "queries",
    params(FunnelQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of days", body = FunnelPage),
        (status = 400, description = "`invalid_query` or `invalid_as_of`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 409, description = "`position_not_reached`: `min_position` is not in the log (yet)", body = ErrorBody),
        (status = 503, description = "`projection_behind` (with `checkpoint`), `projections_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn funnel(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<FunnelQuery>,
) -> Result<Json<FunnelPage>, ApiError> {
    caller.require_all_tenants()?;
    let day = |name: &str, text: &Option<String>| -> Result<Option<NaiveDate>, ApiError> {
        text.as_deref()
            .map(|t| {
                ledger_read_models::parse_day(t).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidQuery,
                        format!("{name} must be a day as YYYY-MM-DD, not {}", quote(t)),
                    )
                })
            })
            .transpose()
    };
    let (from, to) = (day("from", &q.from)?, day("to", &q.to)?);
    if let Some(as_of) = &q.as_of {
        let at = crate::history::parse_as_of("as_of", as_of)?;
        let limit = page_limit(q.limit, &state.config)?;
        position_param("min_position", q.min_position)?;
        let after = q
            .cursor
            .as_deref()
            .map(|c| decode_cursor(&onboarding_funnel::DAYS, c))
            .transpose()?;
        let rows = crate::history::funnel_as_of(
            state.raw_store().as_ref(),
            at,
            from,
            to,
            after,
            limit + 1,
        )
        .await?;
        let (items, next_cursor) = finish(rows, limit);
        return Ok(Json(FunnelPage {
            as_of: Some(at),
            items,
            next_cursor,
        }));
    }
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor,
        min_position: q.min_position,
    };
    let page = prepare(
        &state,
        "onboarding_funnel",
        &onboarding_funnel::DAYS,
        &paging,
    )
    .await?;
    let store = projector(&state)?.store();
    let rows =
        onboarding_funnel::days(store.as_ref(), from, to, page.after, page.limit + 1).await?;
    let (items, next_cursor) = finish(rows, page.limit);
    Ok(Json(FunnelPage {
        as_of: None,
        items,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let tenant = vec![Value::text("0190-ab")];
        assert_eq!(
            decode_cursor(&tenant_phase::TABLE, &encode_cursor(&tenant)).unwrap(),
            tenant
        );
        let sync = vec![Value::text("t-1"), Value::text("crm\nx")];
        assert_eq!(
            decode_cursor(&pending_syncs::TABLE, &encode_cursor(&sync)).unwrap(),
            sync
        );
        for bad in ["zz", "abc", "+f"] {
            assert_eq!(
                decode_cursor(&tenant_phase::TABLE, bad).unwrap_err().code(),
                Code::InvalidQuery
            );
        }
        // A cursor of fewer parts than the key continues after those parts.
        let one_part = encode_cursor(&tenant);
        assert_eq!(
            decode_cursor(&pending_syncs::TABLE, &one_part).unwrap(),
            vec![Value::text("0190-ab"), Value::text("")]
        );
        assert_eq!(
            decode_cursor(&tenant_phase::TABLE, "").unwrap(),
            vec![Value::text("")]
        );
    }
}
