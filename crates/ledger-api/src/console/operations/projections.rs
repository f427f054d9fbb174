//! The read models (`/ui/projections`): version, checkpoint, lag, state and any rebuild's
//! progress, updated live over Server-Sent Events; the admin starts rebuilds from it.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ledger_projector::State as ProjectionState;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Notice, given, with_query};
use crate::auth::Caller;
use crate::console::page::page as shell;
use crate::console::{ConsoleError, Session, see_other};
use crate::error::ApiError;
use crate::input::{ApiPath, ApiQuery};
use crate::routes::projections::{ProjectionView, list_projections, rebuild as start_rebuild};
use crate::shutdown::{Draining, shutting_down};
use crate::state::AppState;

/// How often the live table is sent while a read model rebuilds or lags.
const BUSY_EVERY: Duration = Duration::from_millis(500);
/// How often it is sent otherwise.
const IDLE_EVERY: Duration = Duration::from_secs(5);
/// How long the browser waits before it reconnects after the server's shutdown.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// The URL of the live table's events.
const EVENTS_URL: &str = "/ui/projections/events";

/// `GET /ui/projections` parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProjectionsParams {
    /// What the last action did: `rebuild_started` or `rebuild_running`.
    done: Option<String>,
    /// The read model it did it to.
    name: Option<String>,
}

/// The rebuild form's field.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RebuildForm {
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// Every read model's status, as `GET /v1/projections` answers this session (403 for a tenant).
async fn statuses(caller: &Caller, state: &AppState) -> Result<Vec<ProjectionView>, ApiError> {
    Ok(list_projections(caller.clone(), State(state.clone()))
        .await?
        .0
        .items)
}

/// The CSRF token of the rebuild forms, for the admin only.
fn actions(session: &Session) -> Option<&str> {
    matches!(session.caller, Caller::Admin { .. }).then_some(session.csrf.as_str())
}

/// `GET /ui/projections`: every read model's status, live.
pub(crate) async fn page(
    session: Session,
    State(state): State<AppState>,
    params: Result<ApiQuery<ProjectionsParams>, ApiError>,
) -> Result<Response, ConsoleError> {
    let ApiQuery(params) = params?;
    let items = statuses(&session.caller, &state).await?;
    let name = given(params.name).filter(|n| items.iter().any(|i| i.name == *n));
    let notice = match (params.done.as_deref(), name) {
        (Some("rebuild_started"), Some(name)) => Notice::Done(format!(
            "Rebuild of {name} started: fresh tables fill from the log while the live ones keep serving."
        )),
        (Some("rebuild_running"), Some(name)) => {
            Notice::Note(format!("A rebuild of {name} was already running."))
        }
        _ => Notice::None,
    };
    let body = html! {
        h1 { "Read models" }
        p class="muted" {
            "Each read model applies the log's events to its tables. This table updates by itself."
        }
        (notice.render())
        div id="projections-live" data-live=(EVENTS_URL) {
            (table(&items, actions(&session)))
        }
    };
    Ok(shell("Projections", Some(&session), body).into_response())
}

/// Whether a read model is rebuilding or behind the log (the table is then sent more often).
fn busy(items: &[ProjectionView]) -> bool {
    items
        .iter()
        .any(|i| i.lag > 0 || i.rebuild.is_some() || i.state != ProjectionState::Live)
}

/// `GET /ui/projections/events`: the table as Server-Sent Events: a `view` (its HTML) now, then
/// every 500 ms while a read model rebuilds or lags and every 5 s otherwise; `shutdown` (with
/// `retry`) when the server stops.
pub(crate) async fn events(
    session: Session,
    State(state): State<AppState>,
    draining: Option<Extension<Draining>>,
) -> Result<Response, ConsoleError> {
    let mut items = statuses(&session.caller, &state).await?;
    let csrf = actions(&session).map(str::to_string);
    let caller = session.caller.clone();
    let mut draining = draining.map(|Extension(d)| d);
    let events = async_stream::stream! {
        // An unchanged table is not sent again, so a keyboard user's focus stays where it is.
        let mut shown = String::new();
        loop {
            let html = table(&items, csrf.as_deref()).into_string();
            if html != shown {
                yield Ok::<Event, Infallible>(Event::default().event("view").data(html.clone()));
                shown = html;
            }
            let pause = if busy(&items) { BUSY_EVERY } else { IDLE_EVERY };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutting_down(&mut draining) => {
                    yield Ok(Event::default().event("shutdown").retry(RECONNECT_AFTER).data("the server is restarting"));
                    return;
                }
            }
            match statuses(&caller, &state).await {
                Ok(now) => items = now,
                Err(e) => {
                    tracing::warn!(error = %e.body().message, "projections page: reading the status failed");
                }
            }
        }
    };
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `POST /ui/projections/{name}/rebuild`: starts an online rebuild, as
/// `POST /v1/projections/{name}/rebuild` does (admin).
pub(crate) async fn rebuild(
    session: Session,
    State(state): State<AppState>,
    path: Result<ApiPath<String>, ApiError>,
    form: Result<Form<RebuildForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    session.check_csrf(form.csrf.as_deref())?;
    let writer = session.writer()?;
    let ApiPath(name) = path?;
    let started = start_rebuild(writer, State(state), ApiPath(name)).await?;
    let bytes = axum::body::to_bytes(started.into_body(), 64 * 1024)
        .await
        .map_err(ApiError::internal)?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    let name = body.get("name").and_then(|n| n.as_str()).unwrap_or("");
    let done = match body.get("started").and_then(serde_json::Value::as_bool) {
        Some(false) => "rebuild_running",
        _ => "rebuild_started",
    };
    Ok(see_other(&with_query(
        "/ui/projections",
        &[("done", done), ("name", name)],
    )))
}

/// A read model's state as its JSON names it (`live`, `rebuilding`, `catching_up`, `failing`).
fn state_name(state: ProjectionState) -> &'static str {
    match state {
        ProjectionState::Live => "live",
        ProjectionState::Rebuilding => "rebuilding",
        ProjectionState::CatchingUp => "catching_up",
        ProjectionState::Failing => "failing",
    }
}

/// The read models' table (`table#projections`), with a rebuild form per row when `csrf` (the
/// admin's) is given.
pub(crate) fn table(items: &[ProjectionView], csrf: Option<&str>) -> Markup {
    html! {
        div class="table-wrap" role="region" aria-label="Read models" tabindex="0" {
            table id="projections" {
                caption class="muted" { "Read models" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Version" }
                        th scope="col" { "Checkpoint" }
                        th scope="col" { "Lag" }
                        th scope="col" { "State" }
                        th scope="col" { "Error" }
                        th scope="col" { "Events" }
                        th scope="col" { "Rebuild" }
                        @if csrf.is_some() { th scope="col" { "Actions" } }
                    }
                }
                tbody {
                    @for item in items {
                        tr data-projection=(item.name) data-state=(state_name(item.state)) {
                            th scope="row" class="name" { code { (item.name) } }
                            td class="version" { (item.version) }
                            td class="checkpoint" { (item.checkpoint) }
                            td class="lag" { (item.lag) }
                            td class="state" { (state_name(item.state)) }
                            td class="error" { (item.error.as_deref().unwrap_or("")) }
                            td class="events" { (item.events) }
                            td class="rebuild-progress" {
                                @if let Some(r) = &item.rebuild {
                                    progress value=(r.done.min(r.total)) max=(r.total.max(1))
                                        aria-label={ "Rebuild of " (item.name) } {}
                                    span class="progress-text" {
                                        (r.done) " / " (r.total) " events"
                                        @if r.total > 0 { " (" (r.done.min(r.total) * 100 / r.total) "%)" }
                                    }
                                    @if !r.running {
                                        " " span class="muted" { "not running here; resumes from its checkpoint" }
                                    }
                                    @if let Some(error) = &r.error {
                                        " " span class="error-text" { (error) }
                                    }
                                } @else {
                                    span class="muted" { "—" }
                                }
                            }
                            @if let Some(csrf) = csrf {
                                td class="actions" {
                                    form class="rebuild" method="post" action={ "/ui/projections/" (item.name) "/rebuild" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button class="rebuild secondary" type="submit" aria-label={ "Rebuild " (item.name) } { "Rebuild" }
                                    }
                                }
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
    use crate::routes::projections::RebuildView;

    use super::*;

    fn view(name: &str, rebuild: Option<RebuildView>) -> ProjectionView {
        ProjectionView {
            name: name.into(),
            version: 2,
            checkpoint: 40,
            lag: 0,
            state: if rebuild.is_some() {
                ProjectionState::Rebuilding
            } else {
                ProjectionState::Live
            },
            error: None,
            events: 40,
            owner: None,
            rebuild,
        }
    }

    fn items() -> Vec<ProjectionView> {
        vec![
            view("tenant_phase", None),
            view(
                "pending_syncs",
                Some(RebuildView {
                    version: 3,
                    checkpoint: 10,
                    done: 25,
                    total: 100,
                    running: true,
                    error: None,
                }),
            ),
        ]
    }

    #[test]
    fn every_read_model_has_a_row_and_a_rebuild_shows_its_progress() {
        let html = table(&items(), None).into_string();
        assert!(html.contains(r#"<table id="projections">"#));
        assert!(html.contains(r#"<tr data-projection="tenant_phase" data-state="live">"#));
        assert!(html.contains(r#"<tr data-projection="pending_syncs" data-state="rebuilding">"#));
        assert!(html.contains(r#"<progress value="25" max="100""#));
        assert!(html.contains("25 / 100 events (25%)"));
        assert!(!html.contains("<form"), "no rebuild for an auditor");
        assert!(busy(&items()));
        assert!(!busy(&items()[..1]));
    }

    #[test]
    fn the_admin_gets_a_rebuild_form_per_row() {
        let html = table(&items(), Some("tok")).into_string();
        assert_eq!(html.matches(r#"<form class="rebuild""#).count(), 2);
        assert!(html.contains(r#"action="/ui/projections/tenant_phase/rebuild""#));
        assert!(html.contains(r#"name="csrf" value="tok""#));
        assert!(html.contains(r#"<button class="rebuild secondary""#));
    }

    #[test]
    fn states_are_named_as_the_api_names_them() {
        for s in [
            ProjectionState::Live,
            ProjectionState::Rebuilding,
            ProjectionState::CatchingUp,
            ProjectionState::Failing,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap().as_str(),
                Some(state_name(s))
            );
        }
    }
}
