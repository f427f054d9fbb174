//! `GET /ui/tenants/{id}?as_of=`: one tenant, folded from its stream as `GET /v1/tenants/{id}`
//! folds it (now, or as of an instant), with its lock, syncs and audit timeline.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use ledger_domain::{DomainError, Stage};
use ledger_read_models::{phase_text, status_text};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::{maybe_time, phase_label, tenant_href};
use crate::console::page::{page as shell, time};
use crate::console::{ConsoleError, Session};
use crate::error::{ApiError, Code};
use crate::history::{TimelineEntry, parse_as_of, tenant_as_of, tenant_timeline};
use crate::input::{ApiPath, ApiQuery, tenant_id};
use crate::quote::quote;
use crate::state::AppState;
use crate::views::{LockView, SyncView, TenantView};

/// The page's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailQuery {
    /// The instant to show the tenant at: the picker's `datetime-local` value (UTC) or RFC 3339.
    as_of: Option<String>,
}

/// What the page shows: the tenant's view (now or then) and its timeline up to that view.
struct Shown {
    /// The tenant.
    view: TenantView,
    /// The instant asked for, if any.
    as_of: Option<DateTime<FixedOffset>>,
    /// The timeline's entries up to the view's seq.
    timeline: Vec<TimelineEntry>,
}

/// `GET /ui/tenants/{id}`: 400 for a malformed id or instant, 403 for another tenant's token,
/// 404 `tenant_not_found` for an unknown tenant (or one not registered at `as_of`).
pub(crate) async fn page(
    session: Session,
    State(state): State<AppState>,
    id: Result<ApiPath<String>, ApiError>,
    query: Result<ApiQuery<DetailQuery>, ApiError>,
) -> Result<Response, ConsoleError> {
    let (ApiPath(id), ApiQuery(query)) = (id?, query?);
    let tenant = tenant_id(&id)?;
    session.caller.require_tenant(tenant)?;
    let as_of = query
        .as_of
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(parse_picker)
        .transpose()?;
    let shown = load(&state, tenant, as_of).await?;
    let title = format!("Tenant {}", shown.view.slug.as_deref().unwrap_or("—"));
    let body = tenant_page(&shown, (state.clock)());
    Ok(shell(&title, Some(&session), body).into_response())
}

/// The tenant as `GET /v1/tenants/{id}` answers it (with `as_of`: as it was then), and its
/// timeline as `GET /v1/tenants/{id}/timeline` answers it, cut at the view's seq so that both
/// show the same events.
async fn load(
    state: &AppState,
    tenant: Uuid,
    as_of: Option<DateTime<FixedOffset>>,
) -> Result<Shown, ApiError> {
    let policy = &state.config.policy;
    let view = match as_of {
        Some(at) => {
            tenant_as_of(state.store.as_ref(), tenant, at, policy)
                .await?
                .tenant
        }
        None => {
            let loaded = state.executor.load(tenant).await?;
            if !loaded.state.is_registered() {
                return Err(DomainError::TenantNotFound.into());
            }
            TenantView::new(tenant, &loaded.state, loaded.seq.0, policy)
        }
    };
    let mut timeline = tenant_timeline(state.store.as_ref(), tenant, 1, usize::MAX)
        .await?
        .entries;
    timeline.retain(|e| e.seq <= view.seq);
    Ok(Shown {
        view,
        as_of,
        timeline,
    })
}

/// An `as_of` from the picker: a `datetime-local` value (`2026-01-20T14:03` or
/// `2026-01-20T14:03:12`), read as UTC, or RFC 3339 with any offset; 400 `invalid_as_of`
/// otherwise.
fn parse_picker(text: &str) -> Result<DateTime<FixedOffset>, ApiError> {
    if let Ok(at) = parse_as_of("as_of", text) {
        return Ok(at);
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .into_iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|naive| naive.and_utc().fixed_offset())
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidAsOf,
                format!(
                    "as_of must be a date and time in UTC such as 2026-01-20T14:03:12, or RFC 3339 such as 2026-01-20T14:03:12Z, not {}",
                    quote(text)
                ),
            )
        })
}

/// An instant as the picker's value: UTC, to the second.
fn picker_value(at: DateTime<FixedOffset>) -> String {
    at.with_timezone(&Utc)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// The whole page; a lock is judged active at `as_of`, or at `now` without one.
fn tenant_page(shown: &Shown, now: DateTime<Utc>) -> Markup {
    let view = &shown.view;
    let at = shown.as_of.map(|a| a.with_timezone(&Utc));
    html! {
        h1 { "Tenant " (view.slug.as_deref().unwrap_or("—")) }
        p class="muted" { "Id " code id="tenant-id" { (view.tenant_id) } }
        (as_of_form(view.tenant_id, shown.as_of))
        @if let Some(at) = at {
            p id="as-of-notice" class="notice" role="status" {
                "State as of " (time(at)) ". "
                a href=(tenant_href(&view.tenant_id.to_string())) { "Show the current state" }
            }
        }
        (state_section(view))
        (lock_section(view.lock.as_ref(), at.unwrap_or(now)))
        (syncs_section(&view.syncs))
        (timeline_section(&shown.timeline))
    }
}

/// The "as of" picker: a GET form back to this page.
fn as_of_form(tenant: Uuid, as_of: Option<DateTime<FixedOffset>>) -> Markup {
    html! {
        form id="as-of-form" class="filters" method="get" action=(tenant_href(&tenant.to_string())) {
            div {
                label for="as_of" { "As of" }
                input id="as_of" name="as_of" type="datetime-local" step="1"
                    value=[as_of.map(picker_value)] aria-describedby="as-of-hint";
                p id="as-of-hint" class="muted" { "In UTC; leave empty for the current state." }
            }
            div { button type="submit" { "Show" } }
        }
    }
}

/// A stage's name as its JSON says it.
fn stage_name(stage: Stage) -> String {
    serde_json::to_value(stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The folded state: registration, phase, stages, key, completion and erasure.
fn state_section(view: &TenantView) -> Markup {
    html! {
        section aria-labelledby="state-heading" {
            h2 id="state-heading" { "State" }
            @if let Some(erased) = view.erased_at {
                p id="erased-notice" class="alert" role="status" {
                    "Erased at " (time(erased)) ": its personal fields read [erased]."
                }
            }
            dl id="tenant-state" class="facts" {
                dt { "Slug" } dd { (view.slug.as_deref().unwrap_or("—")) }
                dt { "Name" } dd id="tenant-name" { (view.name.as_deref().unwrap_or("—")) }
                dt { "Phase" } dd data-phase=(phase_text(view.phase)) { (phase_label(view.phase)) }
                dt { "Registered" } dd { (maybe_time(view.registered_at)) }
                dt { "API key fingerprint" }
                dd {
                    @match &view.api_key {
                        Some(key) => code id="api-key-fingerprint" { (key.fingerprint) },
                        None => span class="muted" { "—" },
                    }
                }
                dt { "Completed" } dd id="completed-at" { (maybe_time(view.completed_at)) }
                dt { "Erased" } dd id="erased-at" { (maybe_time(view.erased_at)) }
                dt { "Seq" } dd { (view.seq) }
                @if let Some(failure) = &view.last_failure {
                    dt { "Last failure" }
                    dd id="last-failure" {
                        (super::super::progress::stage_label(failure.stage)) ": "
                        code { (failure.code) } " at " (time(failure.at))
                    }
                }
            }
            div class="table-wrap" tabindex="0" role="region" aria-label="Stages" {
                table id="stages" {
                    caption { "Stages" }
                    thead { tr { th scope="col" { "Stage" } th scope="col" { "Completed" } } }
                    tbody {
                        @for stage in &view.stages {
                            tr data-stage=(stage_name(stage.stage)) {
                                th scope="row" { (stage.label) }
                                td { (maybe_time(stage.completed_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A lock's state at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockState {
    /// Held: not released, not expired.
    Active,
    /// Released by its holder.
    Released,
    /// Lapsed without a release.
    Expired,
}

/// `lock`'s state at `at`.
fn lock_state(lock: &LockView, at: DateTime<Utc>) -> LockState {
    match lock.released_at {
        Some(released) if released <= at => LockState::Released,
        _ if lock.expires_at > at => LockState::Active,
        _ => LockState::Expired,
    }
}

/// The tenant's last onboarding lock, judged at `at`.
fn lock_section(lock: Option<&LockView>, at: DateTime<Utc>) -> Markup {
    html! {
        section aria-labelledby="lock-heading" {
            h2 id="lock-heading" { "Lock" }
            @match lock {
                None => p id="lock" class="muted" { "Never locked." },
                Some(lock) => {
                    @let state = lock_state(lock, at);
                    dl id="lock" class="facts" data-state=(format!("{state:?}").to_lowercase()) {
                        dt { "Holder" } dd { (lock.holder) }
                        dt { "Acquired" } dd { (time(lock.acquired_at)) }
                        dt { "Expires" } dd { (time(lock.expires_at)) }
                        dt { "Status" }
                        dd {
                            @match (state, lock.released_at) {
                                (LockState::Released, Some(released)) => {
                                    "Released at " (time(released))
                                    @if let Some(reason) = &lock.release_reason { " (" (reason) ")" }
                                }
                                (LockState::Active, _) => strong { "Active" },
                                _ => "Expired",
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The downstream syncs.
fn syncs_section(syncs: &[SyncView]) -> Markup {
    html! {
        section aria-labelledby="syncs-heading" {
            h2 id="syncs-heading" { "Syncs" }
            div class="table-wrap" tabindex="0" role="region" aria-labelledby="syncs-heading" {
                table id="syncs" {
                    thead {
                        tr {
                            th scope="col" { "Target" }
                            th scope="col" { "Status" }
                            th scope="col" { "Attempts" }
                            th scope="col" { "Retries" }
                            th scope="col" { "Last error" }
                        }
                    }
                    tbody {
                        @for sync in syncs {
                            tr data-target=(sync.target) {
                                td { (sync.target) }
                                td { (status_text(sync.status)) }
                                td { (sync.attempts) }
                                td { (sync.retry_count) }
                                td { (sync.last_error.as_deref().unwrap_or("—")) }
                            }
                        }
                        @if syncs.is_empty() {
                            tr { td colspan="5" class="muted" { "No downstream syncs." } }
                        }
                    }
                }
            }
        }
    }
}

/// The audit timeline: every event with who appended it.
fn timeline_section(entries: &[TimelineEntry]) -> Markup {
    let dash = || html! { span class="muted" { "—" } };
    html! {
        section aria-labelledby="timeline-heading" {
            h2 id="timeline-heading" { "Timeline" }
            div class="table-wrap" tabindex="0" role="region" aria-labelledby="timeline-heading" {
                table id="timeline" {
                    thead {
                        tr {
                            th scope="col" { "Seq" }
                            th scope="col" { "Time" }
                            th scope="col" { "Event" }
                            th scope="col" { "What happened" }
                            th scope="col" { "Actor" }
                            th scope="col" { "Token" }
                            th scope="col" { "On behalf of" }
                        }
                    }
                    tbody {
                        @for e in entries {
                            tr data-seq=(e.seq) {
                                td { (e.seq) }
                                td { (time(e.recorded_at)) }
                                td { code { (e.event_type) } }
                                td { (e.summary) }
                                td { @match &e.actor { Some(a) => (a), None => (dash()) } }
                                td { @match &e.token { Some(t) => (t), None => (dash()) } }
                                td { @match &e.on_behalf_of { Some(o) => (o), None => (dash()) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use ledger_domain::{Phase, Policy, Registration, TenantState};

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 14, 0, 0).unwrap() + Duration::seconds(s)
    }

    #[test]
    fn the_picker_reads_datetime_local_as_utc_and_rfc_3339_as_given() {
        let utc = |s| t(s).fixed_offset();
        assert_eq!(parse_picker("2026-01-20T14:00:10").unwrap(), utc(10));
        assert_eq!(parse_picker("2026-01-20T14:01").unwrap(), utc(60));
        assert_eq!(
            parse_picker("2026-01-20T14:00:10.5").unwrap(),
            utc(10) + Duration::milliseconds(500)
        );
        assert_eq!(parse_picker("2026-01-20T16:00:10+02:00").unwrap(), utc(10));
        for bad in ["", "yesterday", "2026-01-20", "2026-01-20 14:00"] {
            let e = parse_picker(bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidAsOf, "{bad}");
        }
        let given = parse_picker("2026-01-20T16:00:10+02:00").unwrap();
        assert_eq!(picker_value(given), "2026-01-20T14:00:10");
    }

    fn lock(released: Option<i64>) -> LockView {
        LockView {
            holder: "tab-a".into(),
            acquired_at: t(0),
            expires_at: t(60),
            released_at: released.map(t),
            release_reason: released.map(|_| "done".into()),
        }
    }

    #[test]
    fn locks_are_judged_at_the_instant_shown() {
        assert_eq!(lock_state(&lock(None), t(59)), LockState::Active);
        assert_eq!(lock_state(&lock(None), t(60)), LockState::Expired);
        assert_eq!(lock_state(&lock(Some(30)), t(30)), LockState::Released);
        assert_eq!(lock_state(&lock(Some(30)), t(29)), LockState::Active);
        let html = lock_section(Some(&lock(Some(30))), t(40)).into_string();
        assert!(html.contains(r#"data-state="released""#));
        assert!(html.contains("(done)"));
        assert!(
            lock_section(None, t(0))
                .into_string()
                .contains("Never locked.")
        );
    }

    fn view() -> TenantView {
        let state = TenantState {
            registration: Some(Registration {
                slug: "acme".into(),
                name: "[erased]".into(),
                registered_at: t(0),
            }),
            phase: Phase::PaymentVerified,
            erased_at: Some(t(90)),
            ..TenantState::default()
        };
        TenantView::new(Uuid::nil(), &state, 4, &Policy::default())
    }

    #[test]
    fn the_page_shows_the_state_the_picker_and_the_as_of_notice() {
        let shown = Shown {
            view: view(),
            as_of: Some(t(95).fixed_offset()),
            timeline: vec![TimelineEntry {
                seq: 1,
                position: 2,
                recorded_at: t(0),
                event_type: "TenantRegistered".into(),
                summary: "tenant registered as acme".into(),
                phase: Phase::NotStarted,
                actor: Some("admin".into()),
                token: Some("bootstrap".into()),
                on_behalf_of: None,
                correlation_id: None,
                request_id: None,
            }],
        };
        let html = tenant_page(&shown, t(1000)).into_string();
        assert!(html.contains(r#"<label for="as_of">As of</label>"#));
        assert!(html.contains(r#"<input id="as_of" name="as_of" type="datetime-local" step="1" value="2026-01-20T14:01:35""#));
        assert!(html.contains("State as of <time datetime=\"2026-01-20T14:01:35Z\">"));
        assert!(html.contains(r#"<dd id="tenant-name">[erased]</dd>"#));
        assert!(html.contains(r#"id="erased-notice""#));
        assert!(html.contains(r#"<dd data-phase="PAYMENT_VERIFIED">Payment verified</dd>"#));
        assert_eq!(html.matches("<tr data-stage=").count(), 5);
        assert!(html.contains(r#"<tr data-seq="1">"#));
        assert!(html.contains("No downstream syncs."));
        let now = Shown {
            as_of: None,
            ..shown
        };
        assert!(
            !tenant_page(&now, t(1000))
                .into_string()
                .contains("as-of-notice")
        );
    }
}
