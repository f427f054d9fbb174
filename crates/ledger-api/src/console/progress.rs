//! The tenant progress page (`/ui/progress/{id}`), reached through a signed, expiring link: the
//! five stages with their state and time, updated live; "Welcome aboard" once complete; a failed
//! step's friendly words; "Setup is in progress in another tab" while another holder has the lock.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ledger_core::Seq;
use ledger_domain::{DomainError, Stage, TenantState, evolve, friendly};
use maud::{Markup, html};

use super::ConsoleError;
use super::link::{Link, LinkQuery, verify};
use super::page::clock;
use super::secret::Keys;
use crate::error::ApiError;
use crate::follow::TenantFollower;
use crate::input::{ApiPath, ApiQuery, tenant_id};
use crate::shutdown::{Draining, shutting_down};
use crate::state::AppState;

/// What ended a wait of the page's event stream.
enum Wake {
    /// An append or the poll: read the stream.
    Read,
    /// The lock lapsed: show it.
    Lapsed,
    /// The link expired.
    Expired,
    /// The server is shutting down.
    Shutdown,
}

/// How long the browser waits before it reconnects after the server's shutdown.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// What the page shows a stage as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StageState {
    /// Completed.
    Done,
    /// Failed last time it ran, not completed since.
    Failed,
    /// Running now: the next stage while a lock is held.
    Running,
    /// Not started.
    Waiting,
}

impl StageState {
    /// The state as the page's `data-state` names it.
    fn as_str(self) -> &'static str {
        match self {
            StageState::Done => "done",
            StageState::Failed => "failed",
            StageState::Running => "running",
            StageState::Waiting => "waiting",
        }
    }

    /// The state as a person reads it.
    fn label(self) -> &'static str {
        match self {
            StageState::Done => "Done",
            StageState::Failed => "Failed",
            StageState::Running => "In progress",
            StageState::Waiting => "Waiting",
        }
    }
}

/// The label of a stage, as the person onboarding reads it.
pub(crate) fn stage_label(stage: Stage) -> &'static str {
    match stage {
        Stage::VerifyingPayment => "Verifying payment",
        Stage::CreatingOrganization => "Creating organisation",
        Stage::SettingUpWorkspace => "Setting up workspace",
        Stage::GeneratingApiKey => "Generating API key",
        Stage::Finalizing => "Finalising",
    }
}

/// The state of each stage, in order.
pub(crate) fn stage_states(state: &TenantState, now: DateTime<Utc>) -> Vec<(Stage, StageState)> {
    let locked = state.lock.as_ref().is_some_and(|l| l.is_active(now));
    let failed = state.last_failure.as_ref().map(|f| f.stage);
    let mut next_found = false;
    Stage::ALL
        .into_iter()
        .map(|stage| {
            let s = if state.stages.contains_key(&stage) || state.phase >= stage.target() {
                StageState::Done
            } else if failed == Some(stage) {
                next_found = true;
                StageState::Failed
            } else if !next_found {
                next_found = true;
                if locked {
                    StageState::Running
                } else {
                    StageState::Waiting
                }
            } else {
                StageState::Waiting
            };
            (stage, s)
        })
        .collect()
}

/// The lock that keeps this link's tab waiting: another holder's, active at `now`.
fn other_tab_lock(
    state: &TenantState,
    now: DateTime<Utc>,
    is_mine: impl Fn(&str) -> bool,
) -> Option<&ledger_domain::Lock> {
    if state.completed_at.is_some() {
        return None;
    }
    state
        .lock
        .as_ref()
        .filter(|l| l.is_active(now) && !is_mine(&l.holder))
}

/// The live part of the page: stages, banners, failure words.
pub(crate) fn panel(
    state: &TenantState,
    now: DateTime<Utc>,
    is_mine: impl Fn(&str) -> bool,
) -> Markup {
    let name = state
        .registration
        .as_ref()
        .map(|r| r.name.as_str())
        .unwrap_or("your account");
    html! {
        h1 { "Setting up " (name) }
        @if state.completed_at.is_some() {
            p id="welcome" class="success" role="status" {
                strong { "Welcome aboard!" } " Your account is ready."
            }
        }
        @if let Some(lock) = other_tab_lock(state, now, is_mine) {
            p id="lock-notice" class="notice" role="status" {
                strong { "Setup is in progress in another tab." }
                " This page follows along; if that tab stops, setup frees at " (clock(lock.expires_at)) "."
            }
        }
        @if let (Some(failure), None) = (&state.last_failure, state.completed_at) {
            @let words = friendly(failure.stage, &failure.code);
            div id="failure" class="alert" role="alert" {
                p class="message" { strong { (stage_label(failure.stage)) ": " } (words.message) }
                p class="next" { (words.next) }
            }
        }
        ol id="stages" class="stages" {
            @for (stage, s) in stage_states(state, now) {
                li data-stage=(serde_stage(stage)) data-state=(s.as_str()) {
                    span class="icon" aria-hidden="true" {
                        @match s { StageState::Done => "✓", StageState::Failed => "!", _ => "" }
                    }
                    span class="label" { (stage_label(stage)) }
                    span class="status" { (s.label()) }
                    @if let Some(at) = state.stages.get(&stage) { (clock(*at)) }
                }
            }
        }
    }
}

/// A stage's name as its JSON says it.
fn serde_stage(stage: Stage) -> String {
    serde_json::to_value(stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The link in the request, verified, with a copy of the console's keys.
async fn verified(state: &AppState, id: &str, query: &LinkQuery) -> Result<(Link, Keys), ApiError> {
    let tenant = tenant_id(id)?;
    let keys = state.console.keys().await?;
    let link = verify(keys, tenant, query, (state.clock)())?;
    Ok((link, keys.clone()))
}

/// The tenant's state and seq, or 404 `tenant_not_found`.
async fn load(state: &AppState, link: &Link) -> Result<(TenantState, Seq), ApiError> {
    let loaded = state.executor.load(link.tenant).await?;
    if !loaded.state.is_registered() {
        return Err(DomainError::TenantNotFound.into());
    }
    Ok((loaded.state, loaded.seq))
}

/// `GET /ui/progress/{id}`: the progress page of a signed link.
pub(crate) async fn page(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LinkQuery>,
) -> Result<Response, ConsoleError> {
    let (link, keys) = verified(&state, &id, &query).await?;
    let (tenant, _) = load(&state, &link).await?;
    let now = (state.clock)();
    let live = format!("/ui/progress/{}/events?{}", link.tenant, link.query(&keys));
    let body = html! {
        section class="card progress" {
            div id="progress" data-live=(live) aria-live="polite" {
                (panel(&tenant, now, |holder| link.is_for(&keys, holder)))
            }
            p class="muted" { "This page updates by itself. The link works until " (clock(link.expires)) "." }
        }
    };
    Ok(super::page::page("Onboarding progress", None, body).into_response())
}

/// `GET /ui/progress/{id}/events`: the page's live part, as Server-Sent Events: a `view` (the
/// panel's HTML) now and whenever the tenant's stream moves or a lock lapses; `done` once
/// onboarding completed; `expired` when the link expires; `shutdown` (with `retry`) when the
/// server stops.
pub(crate) async fn events(
    State(state): State<AppState>,
    draining: Option<Extension<Draining>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LinkQuery>,
) -> Result<Response, ConsoleError> {
    let (link, keys) = verified(&state, &id, &query).await?;
    let (mut tenant, seq) = load(&state, &link).await?;
    let clock = state.clock.clone();
    let mut follower = TenantFollower::new(&state, link.tenant, seq);
    let mut draining = draining.map(|Extension(d)| d);
    let events = async_stream::stream! {
        let view = |tenant: &TenantState| {
            let html = panel(tenant, clock(), |holder| link.is_for(&keys, holder)).into_string();
            Event::default().event("view").data(html)
        };
        yield Ok::<Event, Infallible>(view(&tenant));
        loop {
            if tenant.completed_at.is_some() {
                yield Ok(Event::default().event("done").data("complete"));
                return;
            }
            let now = clock();
            let until_expiry = (link.expires - now).to_std().unwrap_or_default();
            let lapse = tenant
                .lock
                .as_ref()
                .filter(|l| l.is_active(now))
                .and_then(|l| (l.expires_at - now).to_std().ok());
            let woke = tokio::select! {
                () = follower.wake() => Wake::Read,
                () = tokio::time::sleep(lapse.unwrap_or(Duration::MAX / 4)), if lapse.is_some() => Wake::Lapsed,
                () = tokio::time::sleep(until_expiry) => Wake::Expired,
                () = shutting_down(&mut draining) => Wake::Shutdown,
            };
            match woke {
                Wake::Read => {}
                Wake::Lapsed => {
                    yield Ok(view(&tenant));
                    continue;
                }
                Wake::Expired => {
                    yield Ok(Event::default().event("expired").data("This link has expired; ask for a new one to keep following the setup."));
                    return;
                }
                Wake::Shutdown => {
                    yield Ok(Event::default().event("shutdown").retry(RECONNECT_AFTER).data("the server is restarting"));
                    return;
                }
            }
            match follower.read().await {
                Ok(read) if read.is_empty() => {}
                Ok(read) => {
                    for (_, event) in read {
                        tenant = evolve(tenant, &event);
                    }
                    yield Ok(view(&tenant));
                }
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "progress page: reading the tenant failed; trying again at the next wake-up");
                }
            }
        }
    };
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use ledger_domain::{Lock, Phase, Registration, StepFailure};

    use super::*;

    fn registered() -> TenantState {
        TenantState {
            registration: Some(Registration {
                slug: "acme".into(),
                name: "Acme".into(),
                registered_at: Utc::now(),
            }),
            ..TenantState::default()
        }
    }

    fn states(s: &TenantState, now: DateTime<Utc>) -> Vec<StageState> {
        stage_states(s, now).into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn stages_turn_done_in_order_and_the_next_runs_under_a_lock() {
        use StageState::*;
        let now = Utc::now();
        let mut s = registered();
        assert_eq!(states(&s, now), [Waiting; 5]);
        s.lock = Some(Lock {
            holder: "tab-a".into(),
            acquired_at: now,
            expires_at: now + TimeDelta::seconds(60),
            released: None,
        });
        assert_eq!(
            states(&s, now),
            [Running, Waiting, Waiting, Waiting, Waiting]
        );
        s.stages.insert(Stage::VerifyingPayment, now);
        s.phase = Phase::PaymentVerified;
        assert_eq!(states(&s, now), [Done, Running, Waiting, Waiting, Waiting]);
        assert_eq!(
            states(&s, now + TimeDelta::seconds(61)),
            [Done, Waiting, Waiting, Waiting, Waiting]
        );
        s.last_failure = Some(StepFailure {
            stage: Stage::CreatingOrganization,
            code: "organization_exists".into(),
            at: now,
        });
        assert_eq!(states(&s, now), [Done, Failed, Waiting, Waiting, Waiting]);
    }

    #[test]
    fn another_tabs_lock_shows_until_it_lapses_or_onboarding_completes() {
        let now = Utc::now();
        let mut s = registered();
        s.lock = Some(Lock {
            holder: "tab-a".into(),
            acquired_at: now,
            expires_at: now + TimeDelta::seconds(60),
            released: None,
        });
        let text = |s: &TenantState, now, mine: &str| {
            let mine = mine.to_string();
            panel(s, now, move |h| h == mine).into_string()
        };
        assert!(text(&s, now, "tab-b").contains("in progress in another tab"));
        assert!(!text(&s, now, "tab-a").contains("in progress in another tab"));
        assert!(!text(&s, now + TimeDelta::seconds(60), "tab-b").contains("another tab"));
        s.completed_at = Some(now);
        let done = text(&s, now, "tab-b");
        assert!(!done.contains("another tab"));
        assert!(done.contains("Welcome aboard"));
    }

    #[test]
    fn a_failure_shows_friendly_words_never_its_code() {
        let now = Utc::now();
        let mut s = registered();
        s.last_failure = Some(StepFailure {
            stage: Stage::SettingUpWorkspace,
            code: "pg: duplicate key value violates unique constraint".into(),
            at: now,
        });
        let text = panel(&s, now, |_| false).into_string();
        assert!(text.contains(friendly(Stage::SettingUpWorkspace, "x").message));
        assert!(!text.contains("constraint"));
    }
}
