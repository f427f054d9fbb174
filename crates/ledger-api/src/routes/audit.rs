//! `GET /v1/audit/events`: the events of the whole log that match an auditor's filters
//! (tenant, stream, category, type, actor, on behalf of, correlation and request ids, a time
//! range), newest or oldest first. The `audit_trail` read model finds them by its indexes; the
//! events themselves come from the log.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use ledger_commands::Vault;
use ledger_core::{Envelope, LogReader, Position, StoreError};
use ledger_domain::personal::{FieldPath, PERSONAL_METADATA};
use ledger_projector::ProjectionStore;
use ledger_read_models::{AuditFilter, Order, TrailCursor, audit_trail};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{ApiQuery, page_limit, position_param};
use crate::quote::excerpt;
use crate::routes::queries::{projector, tenant_of, wait_for};
use crate::state::AppState;
use crate::views::EnvelopeSchema;

/// Longest value of one text filter, in characters.
pub(crate) const MAX_FILTER_LEN: usize = 256;

/// `GET /v1/audit/events` parameters: every filter given must hold.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Events of this tenant: its stream and its slug claim.
    pub tenant: Option<String>,
    /// Events of this stream.
    pub stream: Option<String>,
    /// Events of streams of this category (`tenant`, `slug`, ...).
    pub category: Option<String>,
    /// Events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Events of this actor: the name of the token that acted (`ops-bot`), or for events
    /// written without one the recorded actor (`cli`, `admin`).
    pub actor: Option<String>,
    /// Events recorded on behalf of this person or service (`X-On-Behalf-Of`).
    pub on_behalf_of: Option<String>,
    /// Events of this correlation id (`X-Correlation-Id`).
    pub correlation_id: Option<String>,
    /// Events of this request id (`X-Request-Id`).
    pub request_id: Option<String>,
    /// Recorded at or after this instant (RFC 3339).
    pub from: Option<String>,
    /// Recorded before this instant (RFC 3339).
    pub to: Option<String>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    pub order: Option<String>,
    /// Most events to return (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until the audit trail has indexed the event at this position (the `position` a
    /// write returned) before answering.
    pub min_position: Option<u64>,
}

/// A page of audit results.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events, by recorded time (then position) in the order asked.
    #[schema(value_type = Vec<EnvelopeSchema>)]
    pub events: Vec<Envelope>,
    /// Send as `cursor` for the next page (same filters and order); `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Searches the whole log by tenant, stream, category, type, actor, on-behalf-of user,
/// correlation or request id and time (admin and auditor tokens; a tenant token only its own
/// tenant's events).
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "log",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of matching events. Refused commands leave no event, so they are not here.", body = AuditPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`position_not_reached`: `min_position` is not in the log (yet); with `head`, the log's last position", body = ErrorBody),
        (status = 503, description = "`projection_behind` (with `checkpoint`), `projections_unavailable`, `log_unavailable` or `unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn audit_events(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let projector = projector(&state)?;
    let log = state.log()?;
    let limit = page_limit(q.limit, &state.config)?;
    let search = AuditSearch::of(&q, tenant_of(&caller))?
        .with_sealed_forms(state.vault())
        .await?;
    if let Some(p) = position_param("min_position", q.min_position)? {
        wait_for(
            projector,
            audit_trail::SCHEMA.name,
            Position(p),
            state.config.projection_wait,
        )
        .await?;
    }
    Ok(Json(
        search
            .page(projector.store().as_ref(), log.as_ref(), limit)
            .await?,
    ))
}

/// An audit query checked: its filter, order and where it resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSearch {
    /// The events wanted.
    pub filter: AuditFilter,
    /// Oldest or newest first.
    pub order: Order,
    /// Resume after this place.
    pub after: Option<TrailCursor>,
}

impl AuditSearch {
    /// The same search also matching the sealed forms `on_behalf_of` takes in the events of
    /// the searched tenant (of every tenant with a key when no tenant is given), as the trail
    /// copies them from the events.
    pub async fn with_sealed_forms(mut self, vault: Option<&Vault>) -> Result<Self, ApiError> {
        let (Some(vault), Some(person)) = (vault, &self.filter.on_behalf_of) else {
            return Ok(self);
        };
        let mut forms = Vec::new();
        for path in PERSONAL_METADATA {
            let tenants = self.filter.tenant.clone().map(|t| vec![t]);
            let field = FieldPath::Metadata(path);
            forms.extend(vault.sealed_forms(field, person, tenants).await?);
        }
        self.filter.on_behalf_of_sealed = forms;
        Ok(self)
    }

    /// The search `q` asks for (400 `invalid_query` for a malformed parameter); with
    /// `only_tenant`, that tenant's events only (a tenant token's).
    pub fn of(q: &AuditQuery, only_tenant: Option<String>) -> Result<Self, ApiError> {
        let order = match q.order.as_deref() {
            None | Some("asc") => Order::Asc,
            Some("desc") => Order::Desc,
            Some(other) => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("order must be asc or desc, not {}", excerpt(other)),
                ));
            }
        };
        let after = q
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<TrailCursor>().map_err(|e| {
                    ApiError::new(Code::InvalidQuery, format!("{e}, not {}", excerpt(c)))
                })
            })
            .transpose()?;
        Ok(Self {
            filter: filter(q, only_tenant)?,
            order,
            after,
        })
    }

    /// The next page of at most `limit` events: positions from the trail, events from the
    /// log.
    pub async fn page(
        &self,
        projections: &dyn ProjectionStore,
        log: &dyn LogReader,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let mut rows =
            audit_trail::page(projections, &self.filter, self.order, self.after, limit + 1).await?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.cursor().to_string())
        } else {
            None
        };
        let positions: Vec<Position> = rows.iter().map(|r| r.position).collect();
        let events = log.events_at(&positions).await?;
        Ok(AuditPage {
            events,
            next_cursor,
        })
    }
}

/// The filter a query asks for; `only_tenant`'s events only when given.
fn filter(q: &AuditQuery, only_tenant: Option<String>) -> Result<AuditFilter, ApiError> {
    let text = |name: &str, value: &Option<String>| -> Result<Option<String>, ApiError> {
        match value {
            Some(v)
                if v.is_empty()
                    || v.chars().count() > MAX_FILTER_LEN
                    || v.chars().any(char::is_control) =>
            {
                Err(ApiError::new(
                    Code::InvalidQuery,
                    format!(
                        "{name} must be 1 to {MAX_FILTER_LEN} characters without control characters, not {}",
                        excerpt(v)
                    ),
                ))
            }
            other => Ok(other.clone()),
        }
    };
    // Tenant ids are UUIDs: any spelling of one finds its tenant.
    let tenant =
        text("tenant", &q.tenant)?.map(|t| Uuid::parse_str(&t).map_or(t, |id| id.to_string()));
    let tenant = match (only_tenant, tenant) {
        // A tenant token asking for another tenant gets no event of it.
        (Some(own), Some(asked)) if own != asked => Some(String::new()),
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    Ok(AuditFilter {
        tenant,
        stream: text("stream", &q.stream)?,
        category: text("category", &q.category)?,
        event_type: text("type", &q.event_type)?,
        actor: text("actor", &q.actor)?,
        on_behalf_of: text("on_behalf_of", &q.on_behalf_of)?,
        on_behalf_of_sealed: Vec::new(),
        correlation_id: text("correlation_id", &q.correlation_id)?,
        request_id: text("request_id", &q.request_id)?,
        from: instant("from", q.from.as_deref())?,
        to: instant("to", q.to.as_deref())?,
    })
}

/// An RFC 3339 instant sent as `name`.
fn instant(name: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t.trim())
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::new(
                    Code::InvalidQuery,
                    format!(
                        "{name} must be an RFC 3339 date and time such as 2026-01-20T14:03:12Z, not {} ({e})",
                        excerpt(t)
                    ),
                )
            })
    })
    .transpose()
}
