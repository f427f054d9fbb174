//! A tenant's history for people: its state, lock and syncs as of any instant, the funnel as of
//! any instant, and its timeline in words. The routes and `ledger audit` both call the
//! functions here, so they answer alike.
//!
//! As-of views are folded by the same pure code as the live ones: the tenant's state by the
//! executor's load (`ledger_commands::Loaded`, the domain's `evolve`), the lock, syncs and
//! funnel by the read models' own `apply` over rows in memory
//! ([`ledger_read_models::as_of`]). An event counts when its `recorded_at` is at or before
//! the instant ([`Cutoff`]).
//!
//! Refused commands append nothing, so they leave no trace in a timeline or an as-of view.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use futures::TryStreamExt;
use ledger_commands::{Loaded, decode, tenant_stream};
use ledger_core::{Envelope, EventStore, ReadAll, Seq, Trail};
use ledger_domain::{DomainError, Phase, Policy, TenantState, describe, evolve};
use ledger_projector::Key;
use ledger_read_models::{
    Change, Cutoff, FunnelAsOf, FunnelDay, LockRow, PendingSyncRow, PhaseSchema, TENANT_CATEGORY,
    tenant_rows,
};
use serde::Serialize;
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, Code};
use crate::quote::quote;
use crate::views::TenantView;

/// A tenant as it was at an instant: its view folded from the events recorded up to then
/// (`seq`: where its stream stood), and its `onboarding_locks` and `pending_syncs` rows then.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct TenantAsOf {
    /// The instant asked for, as it was given (its offset kept).
    pub as_of: DateTime<FixedOffset>,
    /// The tenant's view then; its `seq` is the last event recorded at or before `as_of`.
    #[serde(flatten)]
    pub tenant: TenantView,
    /// The tenant's `onboarding_locks` row then (null: it had never taken the lock).
    pub onboarding_lock: Option<LockRow>,
    /// The tenant's `pending_syncs` rows then, by target.
    pub pending_syncs: Vec<PendingSyncRow>,
}

/// The answer of `GET /v1/tenants/{id}`: the live view, or with `as_of` the view then.
#[allow(dead_code)]
pub(crate) enum TenantAnswer {
    /// Without `as_of`.
    Live(TenantView),
    /// With `as_of`.
    AsOf(TenantAsOf),
}

impl PartialSchema for TenantAnswer {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                TenantView::name(),
            )))
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                TenantAsOf::name(),
            )))
            .description(Some(
                "The tenant now (`TenantView`), or with `as_of` as it was then (`TenantAsOf`)",
            ))
            .into()
    }
}

impl ToSchema for TenantAnswer {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((TenantView::name().into(), TenantView::schema()));
        TenantView::schemas(schemas);
        schemas.push((TenantAsOf::name().into(), TenantAsOf::schema()));
        TenantAsOf::schemas(schemas);
    }
}

/// One event of a tenant's stream, in words.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// The event's seq in the tenant's stream.
    pub seq: u64,
    /// Its place in the global log.
    pub position: u64,
    /// When the database recorded it (UTC).
    pub recorded_at: DateTime<Utc>,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What happened, in words (times in it are UTC).
    pub summary: String,
    /// The tenant's phase after the event.
    #[schema(value_type = PhaseSchema)]
    pub phase: Phase,
    /// Who appended it, as its metadata says (`admin`, `tenant:<id>`, ...).
    pub actor: Option<String>,
    /// The name of the token it was appended with, when recorded.
    pub token: Option<String>,
    /// The end user an admin or service acted for, when recorded.
    pub on_behalf_of: Option<String>,
    /// The correlation id of the request that appended it, when sent.
    pub correlation_id: Option<String>,
    /// The id of the request that appended it.
    pub request_id: Option<String>,
}

/// A page of a tenant's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Timeline {
    /// The tenant.
    pub tenant_id: Uuid,
    /// One entry per event, in seq order.
    pub entries: Vec<TimelineEntry>,
    /// The `from_seq` of the next page, or null when this page reaches the stream's end.
    pub next_from_seq: Option<u64>,
}

/// Parses an `as_of` instant: RFC 3339, any offset (kept, so that the answer can say the
/// instant as it was given, even one whose UTC form falls outside the years 0 to 9999); 400
/// `invalid_as_of` otherwise.
pub fn parse_as_of(name: &str, text: &str) -> Result<DateTime<FixedOffset>, ApiError> {
    DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
            ApiError::new(
                Code::InvalidAsOf,
                format!(
                    "{name} must be an RFC 3339 date and time such as 2026-01-20T14:03:12Z, not {} ({e})",
                    quote(text)
                ),
            )
        })
}

/// The tenant's view as of `at`, from its `loaded` stream; `None` when it was not registered
/// then.
pub(crate) fn tenant_view_as_of(
    tenant_id: Uuid,
    loaded: &Loaded,
    at: DateTime<FixedOffset>,
    policy: &Policy,
) -> Result<Option<TenantAsOf>, ApiError> {
    let mut cutoff = Cutoff::new(at.with_timezone(&Utc));
    let taken: Vec<&Envelope> = loaded
        .envelopes
        .iter()
        .take_while(|e| cutoff.admits(e.stream.as_str(), e.recorded_at))
        .collect();
    let seq = taken.last().map_or(Seq(0), |e| e.seq);
    let state = loaded.state_at(seq)?;
    if !state.is_registered() {
        return Ok(None);
    }
    let changes = taken
        .iter()
        .filter_map(|e| Change::from_envelope((*e).clone()));
    let (onboarding_lock, pending_syncs) = tenant_rows(changes).map_err(ApiError::internal)?;
    Ok(Some(TenantAsOf {
        as_of: at,
        tenant: TenantView::new(tenant_id, &state, seq.0, policy),
        onboarding_lock,
        pending_syncs,
    }))
}

/// The tenant as of `at` (404 `tenant_not_found` when it was not registered then).
pub async fn tenant_as_of(
    store: &dyn EventStore,
    tenant_id: Uuid,
    at: DateTime<FixedOffset>,
    policy: &Policy,
) -> Result<TenantAsOf, ApiError> {
    let loaded = Loaded::read(store, &tenant_stream(tenant_id)).await?;
    tenant_view_as_of(tenant_id, &loaded, at, policy)?
        .ok_or_else(|| DomainError::TenantNotFound.into())
}

/// The timeline of a tenant's stream (its events in seq order): one entry per event.
pub(crate) fn timeline_entries(envelopes: &[Envelope]) -> Result<Vec<TimelineEntry>, ApiError> {
    let mut state = TenantState::default();
    let mut entries = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let event = decode(envelope)?;
        let summary = describe(&event, &state);
        state = evolve(state, &event);
        let trail = Trail::of(&envelope.metadata);
        entries.push(TimelineEntry {
            seq: envelope.seq.0,
            position: envelope.position.0,
            recorded_at: envelope.recorded_at,
            event_type: envelope.event_type.clone(),
            summary,
            phase: state.phase,
            actor: trail.role,
            token: trail.token,
            on_behalf_of: trail.on_behalf_of,
            correlation_id: trail.correlation_id,
            request_id: trail.request_id,
        });
    }
    Ok(entries)
}

/// A page of the tenant's timeline: at most `limit` entries from `from_seq` (404
/// `tenant_not_found` when the tenant is not registered).
pub async fn tenant_timeline(
    store: &dyn EventStore,
    tenant_id: Uuid,
    from_seq: u64,
    limit: usize,
) -> Result<Timeline, ApiError> {
    let loaded = Loaded::read(store, &tenant_stream(tenant_id)).await?;
    if !loaded.state.is_registered() {
        return Err(DomainError::TenantNotFound.into());
    }
    let mut entries = timeline_entries(&loaded.envelopes)?;
    entries.retain(|e| e.seq >= from_seq);
    let next_from_seq = (entries.len() > limit).then(|| entries[limit].seq);
    entries.truncate(limit);
    Ok(Timeline {
        tenant_id,
        entries,
        next_from_seq,
    })
}

/// The funnel's days from `from` to `to` after `after` (at most `limit`) as of `at`: the
/// `onboarding_funnel` read model folded in memory from the whole log's tenant events recorded
/// up to then (the log is read a page at a time; memory grows with the tenants, not the log).
pub async fn funnel_as_of(
    store: &dyn EventStore,
    at: DateTime<FixedOffset>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    after: Option<Key>,
    limit: usize,
) -> Result<Vec<FunnelDay>, ApiError> {
    let mut cutoff = Cutoff::new(at.with_timezone(&Utc));
    let mut funnel = FunnelAsOf::default();
    let mut log = store.read_all(ReadAll::from_start().category(TENANT_CATEGORY));
    while let Some(envelope) = log.try_next().await? {
        if !cutoff.admits(envelope.stream.as_str(), envelope.recorded_at) {
            continue;
        }
        if let Some(change) = Change::from_envelope(envelope) {
            funnel.push(change).map_err(ApiError::internal)?;
        }
    }
    funnel
        .days(from, to, after, limit)
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use ledger_core::{Position, StreamName};
    use ledger_domain::TenantEvent;
    use serde_json::{Value, json};

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 14, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn at(s: i64) -> DateTime<FixedOffset> {
        t(s).fixed_offset()
    }

    fn envelope(
        seq: u64,
        event: &TenantEvent,
        metadata: Value,
        recorded_at: DateTime<Utc>,
    ) -> Envelope {
        let (ty, data) = event.to_parts();
        Envelope {
            event_id: Uuid::now_v7(),
            stream: StreamName::parse("tenant-0190aaaa-0000-7000-8000-000000000001").unwrap(),
            seq: Seq(seq),
            position: Position(seq * 10),
            event_type: ty.to_string(),
            data,
            metadata,
            recorded_at,
        }
    }

    fn stream() -> Vec<Envelope> {
        let events = [
            TenantEvent::TenantRegistered {
                slug: "acme".into(),
                name: "Acme".into(),
                at: t(0),
            },
            TenantEvent::OnboardingLockAcquired {
                holder: "tab-a".into(),
                at: t(10),
                expires_at: t(70),
            },
            TenantEvent::PaymentVerified {
                checkout_session_id: "cs_123".into(),
                at: t(20),
            },
            TenantEvent::BackendSyncFailed {
                target: "crm".into(),
                attempts: 1,
                last_error: "timeout".into(),
                at: t(30),
            },
            TenantEvent::OnboardingLockReleased {
                holder: "tab-a".into(),
                reason: "done".into(),
                at: t(40),
            },
        ];
        let metadata = [
            json!({"actor": "admin", "token": "bootstrap", "request_id": "r1"}),
            json!({"actor": "tenant:x", "request_id": "r2", "correlation_id": "c2"}),
            json!({"actor": {"role": "service", "token": {"name": "ops-bot"}, "on_behalf_of": "alice@example.com"}}),
            json!({}),
            json!({"actor": {"role": "tenant", "tenant": "x"}, "on_behalf_of": "bob"}),
        ];
        events
            .iter()
            .zip(metadata)
            .enumerate()
            .map(|(i, (e, m))| envelope(i as u64 + 1, e, m, t(i as i64 * 10 + 1)))
            .collect()
    }

    fn loaded() -> Loaded {
        let mut loaded = Loaded::default();
        for e in stream() {
            loaded.push(e).unwrap();
        }
        loaded
    }

    #[test]
    fn as_of_takes_the_events_recorded_by_then() {
        let id = Uuid::nil();
        let policy = Policy::default();
        let loaded = loaded();
        assert_eq!(
            tenant_view_as_of(id, &loaded, at(0), &policy).unwrap(),
            None
        );
        let registered = tenant_view_as_of(id, &loaded, at(1), &policy)
            .unwrap()
            .unwrap();
        assert_eq!(registered.tenant.seq, 1);
        assert_eq!(registered.as_of, at(1));
        assert_eq!(registered.onboarding_lock, None);
        let locked = tenant_view_as_of(id, &loaded, at(35), &policy)
            .unwrap()
            .unwrap();
        assert_eq!(locked.tenant.seq, 4);
        assert_eq!(locked.tenant.phase, Phase::PaymentVerified);
        let lock = locked.onboarding_lock.unwrap();
        assert_eq!((lock.holder.as_str(), lock.released_at), ("tab-a", None));
        assert_eq!(locked.pending_syncs.len(), 1);
        assert_eq!(locked.pending_syncs[0].target, "crm");
        let now = tenant_view_as_of(id, &loaded, at(1000), &policy)
            .unwrap()
            .unwrap();
        assert_eq!(now.tenant, TenantView::new(id, &loaded.state, 5, &policy));
        assert_eq!(now.onboarding_lock.unwrap().released_at, Some(t(40)));
    }

    #[test]
    fn as_of_stops_a_stream_at_its_first_later_event() {
        let mut envelopes = stream();
        // Event 2 recorded after event 3 (a transaction's start time on PostgreSQL).
        envelopes[1].recorded_at = t(25);
        let mut loaded = Loaded::default();
        for e in envelopes {
            loaded.push(e).unwrap();
        }
        let then = tenant_view_as_of(Uuid::nil(), &loaded, at(22), &Policy::default())
            .unwrap()
            .unwrap();
        assert_eq!(then.tenant.seq, 1);
        assert_eq!(then.tenant.phase, Phase::NotStarted);
    }

    #[test]
    fn timelines_say_what_happened_who_did_it_and_the_phase_after() {
        let entries = timeline_entries(&stream()).unwrap();
        let lines: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.seq,
                    e.summary.as_str(),
                    e.phase,
                    e.actor.as_deref(),
                    e.token.as_deref(),
                    e.on_behalf_of.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                (
                    1,
                    r#"tenant registered as acme ("Acme")"#,
                    Phase::NotStarted,
                    Some("admin"),
                    Some("bootstrap"),
                    None
                ),
                (
                    2,
                    "onboarding lock acquired by tab-a until 14:01:10",
                    Phase::NotStarted,
                    Some("tenant:x"),
                    None,
                    None
                ),
                (
                    3,
                    "payment cs_123 verified",
                    Phase::PaymentVerified,
                    Some("service"),
                    Some("ops-bot"),
                    Some("alice@example.com")
                ),
                (
                    4,
                    "sync to crm failed (1 attempt): timeout",
                    Phase::PaymentVerified,
                    None,
                    None,
                    None
                ),
                (
                    5,
                    "onboarding lock released by tab-a (done)",
                    Phase::PaymentVerified,
                    Some("tenant:x"),
                    None,
                    Some("bob")
                ),
            ]
        );
        assert_eq!(entries[1].correlation_id.as_deref(), Some("c2"));
        assert_eq!(entries[1].request_id.as_deref(), Some("r2"));
        assert_eq!(entries[0].position, 10);
        assert_eq!(entries[4].event_type, "OnboardingLockReleased");
        let mut bad = stream();
        bad[2].event_type = "Nope".into();
        assert_eq!(
            timeline_entries(&bad).unwrap_err().code(),
            Code::CorruptHistory
        );
    }

    #[test]
    fn as_of_parses_rfc_3339_only() {
        assert_eq!(parse_as_of("as_of", "2026-01-20T14:00:10Z").unwrap(), t(10));
        assert_eq!(
            parse_as_of("as_of", "2026-01-20T16:00:10+02:00").unwrap(),
            t(10)
        );
        // Kept as given: its UTC form would be in the year 10000.
        let far = parse_as_of("as_of", "9999-12-31T23:59:59-23:59").unwrap();
        assert_eq!(
            serde_json::to_value(far).unwrap(),
            "9999-12-31T23:59:59-23:59"
        );
        for bad in [
            "",
            "yesterday",
            "2026-01-20",
            "2026-01-20T14:00:10",
            "1768917610",
        ] {
            let e = parse_as_of("as_of", bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidAsOf, "{bad}");
            assert_eq!(e.status().as_u16(), 400);
        }
    }
}
