//! The compensation queue (`/ui/queue`): the `pending_syncs` read model, and for the admin a
//! retry and an abandon per pending sync, run through the API's command route.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ledger_domain::SyncStatus;
use ledger_read_models::{PendingSyncRow, status_text};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Notice, given, with_query};
use crate::auth::Caller;
use crate::console::page::{page as shell, time};
use crate::console::{ConsoleError, Session, see_other};
use crate::context::RequestContext;
use crate::error::{ApiError, Code, ErrorCode};
use crate::input::{ApiPath, ApiQuery, RawBody};
use crate::routes::commands::run_command;
use crate::routes::queries::{PendingSyncPage, SyncsQuery, list_pending_syncs};
use crate::state::AppState;

/// The statuses the filter offers, after "All".
const STATUSES: [&str; 3] = ["pending_sync", "failed", "synced"];

/// Largest command response read back (it holds the tenant's state).
const MAX_RESULT_BYTES: usize = 1 << 20;

/// `GET /ui/queue` parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct QueueParams {
    /// Only syncs with this status (empty: all).
    status: Option<String>,
    /// The next page's cursor.
    cursor: Option<String>,
    /// Wait until the queue has applied this position (the position an action returned).
    min_position: Option<u64>,
    /// What the last action did: `retried` or `abandoned`.
    done: Option<String>,
}

/// The fields of the retry and abandon forms.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActionForm {
    /// The session's CSRF token.
    csrf: Option<String>,
    /// The tenant id.
    tenant: Option<String>,
    /// The downstream system.
    target: Option<String>,
    /// The status filter to return to.
    status: Option<String>,
    /// Why the sync is abandoned (abandon only).
    reason: Option<String>,
}

/// What the table needs to know of the person looking at it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Viewer<'a> {
    /// The CSRF token of the action forms, for the admin; `None`: no actions shown.
    pub(crate) actions: Option<&'a str>,
}

impl<'a> Viewer<'a> {
    /// The viewer a session is: actions for the admin only.
    fn of(session: &'a Session) -> Self {
        let admin = matches!(session.caller, Caller::Admin { .. });
        Self {
            actions: admin.then_some(session.csrf.as_str()),
        }
    }
}

/// `GET /ui/queue`: the compensation queue, filtered by status.
pub(crate) async fn page(
    session: Session,
    State(state): State<AppState>,
    params: Result<ApiQuery<QueueParams>, ApiError>,
) -> Result<Response, ConsoleError> {
    let ApiQuery(params) = params?;
    let filter = given(params.status);
    let cursor = given(params.cursor);
    let (rows, behind) = read(
        &session,
        &state,
        filter.clone(),
        cursor.clone(),
        params.min_position,
    )
    .await?;
    let notice = match params.done.as_deref() {
        _ if behind => Notice::Note(
            "Done; the queue has not caught up with it yet: reload in a moment to see it.".into(),
        ),
        Some("retried") => Notice::Done(
            "Retry recorded: the sync stays pending and its retry count went up.".into(),
        ),
        Some("abandoned") => Notice::Done("Sync abandoned: it is now failed.".into()),
        _ => Notice::None,
    };
    Ok(render(
        &session,
        filter.as_deref(),
        cursor.is_some(),
        &rows,
        &notice,
    )
    .into_response())
}

/// A page of the queue as the API answers `GET /v1/pending-syncs` for this session; `true`
/// with it when the queue did not reach `min_position` in time (the page then shows it as it is).
async fn read(
    session: &Session,
    state: &AppState,
    status: Option<String>,
    cursor: Option<String>,
    min_position: Option<u64>,
) -> Result<(PendingSyncPage, bool), ApiError> {
    let query = |min_position| SyncsQuery {
        status: status.clone(),
        limit: None,
        cursor: cursor.clone(),
        min_position,
    };
    let list = |q| list_pending_syncs(session.caller.clone(), State(state.clone()), ApiQuery(q));
    match list(query(min_position)).await {
        Ok(rows) => Ok((rows.0, false)),
        Err(e) if e.code() == Code::ProjectionBehind && min_position.is_some() => {
            Ok((list(query(None)).await?.0, true))
        }
        Err(e) => Err(e),
    }
}

/// The whole queue page.
fn render(
    session: &Session,
    filter: Option<&str>,
    paged: bool,
    rows: &PendingSyncPage,
    notice: &Notice,
) -> axum::response::Html<String> {
    let body = html! {
        h1 { "Compensation queue" }
        p class="muted" {
            "Downstream syncs that failed, from the pending_syncs read model. A retry records that the sync is being tried again; abandoning gives up on it."
        }
        (notice.render())
        form class="filters" method="get" action="/ui/queue" {
            div {
                label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" selected[filter.is_none()] { "All" }
                    @for s in STATUSES {
                        option value=(s) selected[filter == Some(s)] { (s) }
                    }
                }
            }
            div { button type="submit" { "Filter" } }
        }
        (table(&rows.items, filter.unwrap_or(""), Viewer::of(session)))
        nav class="pager" aria-label="Pages" {
            @if paged {
                a href=(with_query("/ui/queue", &[("status", filter.unwrap_or(""))])) { "First page" }
                " "
            }
            @if let Some(next) = &rows.next_cursor {
                a rel="next" href=(with_query("/ui/queue", &[("status", filter.unwrap_or("")), ("cursor", next)])) { "Next page" }
            }
        }
    };
    shell("Queue", Some(session), body)
}

/// The queue's table (`table#queue`); the retry and abandon forms on pending rows when the
/// viewer may act. `filter` is the status filter the forms return to.
pub(crate) fn table(rows: &[PendingSyncRow], filter: &str, viewer: Viewer<'_>) -> Markup {
    html! {
        @if rows.is_empty() {
            p id="queue-empty" class="muted" { "No syncs match." }
        }
        div class="table-wrap" role="region" aria-label="Queue" tabindex="0" {
            table id="queue" {
                caption class="muted" { (rows.len()) @if rows.len() == 1 { " sync" } @else { " syncs" } }
                thead {
                    tr {
                        th scope="col" { "Tenant" }
                        th scope="col" { "Target" }
                        th scope="col" { "Status" }
                        th scope="col" { "Attempts" }
                        th scope="col" { "Retries" }
                        th scope="col" { "Last error" }
                        th scope="col" { "First failed" }
                        th scope="col" { "Updated" }
                        @if viewer.actions.is_some() { th scope="col" { "Actions" } }
                    }
                }
                tbody {
                    @for (i, row) in rows.iter().enumerate() {
                        tr data-tenant=(row.tenant_id) data-target=(row.target) {
                            td class="tenant" {
                                (crate::console::page::tenant_link(&row.tenant_id))
                            }
                            td class="target" { (row.target) }
                            td class="status" data-status=(status_text(row.status)) { (status_text(row.status)) }
                            td class="attempts" { (row.attempts) }
                            td class="retry-count" { (row.retry_count) }
                            td class="last-error" { (row.last_error.as_deref().unwrap_or("")) }
                            td class="first-failed" {
                                @if let Some(at) = row.first_failed_at { (time(at)) } @else { span class="muted" { "—" } }
                            }
                            td class="updated" { (time(row.updated_at)) }
                            @if let Some(csrf) = viewer.actions {
                                td class="actions" {
                                    @if row.status == SyncStatus::PendingSync {
                                        (actions(i, row, filter, csrf))
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

/// The retry and abandon forms of row `i`.
fn actions(i: usize, row: &PendingSyncRow, filter: &str, csrf: &str) -> Markup {
    let what = format!("{} of tenant {}", row.target, row.tenant_id);
    let reason = format!("reason-{i}");
    html! {
        form class="retry" method="post" action="/ui/queue/retry" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="tenant" value=(row.tenant_id);
            input type="hidden" name="target" value=(row.target);
            input type="hidden" name="status" value=(filter);
            button class="retry" type="submit" aria-label={ "Retry now: " (what) } { "Retry now" }
        }
        form class="abandon" method="post" action="/ui/queue/abandon" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="tenant" value=(row.tenant_id);
            input type="hidden" name="target" value=(row.target);
            input type="hidden" name="status" value=(filter);
            label for=(reason) { "Reason to abandon " span class="muted" { (row.target) } }
            input id=(reason) name="reason" type="text" required maxlength="1000" autocomplete="off";
            button class="abandon danger" type="submit" aria-label={ "Abandon: " (what) } { "Abandon" }
        }
    }
}

/// `POST /ui/queue/retry` (`record-sync-retry`) and `POST /ui/queue/abandon` (`abandon-sync`),
/// as `POST /v1/tenants/{id}/commands/...` runs them.
pub(crate) async fn action(
    session: Session,
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let action = match name.as_str() {
        "retry" => Action::Retry,
        "abandon" => Action::Abandon,
        _ => {
            return Err(
                ApiError::new(Code::NotFound, "the queue's actions are retry and abandon").into(),
            );
        }
    };
    let form = form.map(|Form(f)| f).unwrap_or_default();
    act(session, state, ctx, &headers, uri, form, action).await
}

/// The queue's two actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// `record-sync-retry`.
    Retry,
    /// `abandon-sync`.
    Abandon,
}

impl Action {
    /// The API's name of the command.
    fn command(self) -> &'static str {
        match self {
            Action::Retry => "record-sync-retry",
            Action::Abandon => "abandon-sync",
        }
    }

    /// What the page's `done` parameter says after it.
    fn done(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Abandon => "abandoned",
        }
    }

    /// The command's JSON body.
    fn body(self, form: &ActionForm) -> Bytes {
        let mut body = serde_json::Map::new();
        let target = form.target.clone().unwrap_or_default();
        body.insert("target".into(), target.into());
        if self == Action::Abandon {
            let reason = form.reason.clone().unwrap_or_default();
            body.insert("reason".into(), reason.into());
        }
        Bytes::from(serde_json::Value::Object(body).to_string())
    }
}

/// Checks the form's CSRF token, then the writer (403 for an auditor), then runs the command
/// through the API's route: 303 back to the queue when it ran, the queue with the API's
/// refusal when the domain refused it.
async fn act(
    session: Session,
    state: AppState,
    ctx: Option<Extension<RequestContext>>,
    headers: &HeaderMap,
    uri: Uri,
    form: ActionForm,
    action: Action,
) -> Result<Response, ConsoleError> {
    session.check_csrf(form.csrf.as_deref())?;
    let writer = session.writer()?;
    let ctx = match ctx {
        Some(Extension(ctx)) => ctx,
        None => RequestContext::from_headers(headers)?,
    };
    let filter = given(form.status.clone()).filter(|s| STATUSES.contains(&s.as_str()));
    let tenant = form.tenant.clone().unwrap_or_default();
    let ran = run_command(
        writer,
        ctx,
        State(state.clone()),
        ApiPath((tenant, action.command().to_string())),
        HeaderMap::new(),
        uri,
        RawBody(action.body(&form)),
    )
    .await;
    match ran {
        Ok(response) => {
            let position = position_of(response).await?;
            let to = with_query(
                "/ui/queue",
                &[
                    ("status", filter.as_deref().unwrap_or("")),
                    ("done", action.done()),
                    ("min_position", &position.to_string()),
                ],
            );
            Ok(see_other(&to))
        }
        Err(e) if e.status().is_client_error() => {
            let code = e.code();
            let message = e.body().message;
            let (rows, _) = read(&session, &state, filter.clone(), None, None).await?;
            let notice = Notice::Refused(message);
            let mut response = (
                code.status(),
                render(&session, filter.as_deref(), false, &rows, &notice),
            )
                .into_response();
            response.extensions_mut().insert(ErrorCode(code));
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

/// The `position` of a command's JSON answer.
async fn position_of(response: Response) -> Result<u64, ApiError> {
    if response.status() != StatusCode::OK {
        return Err(ApiError::internal(format!(
            "the command answered {}",
            response.status()
        )));
    }
    let bytes = axum::body::to_bytes(response.into_body(), MAX_RESULT_BYTES)
        .await
        .map_err(ApiError::internal)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    value
        .get("position")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| ApiError::internal("the command's answer has no position"))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn row(tenant: &str, target: &str, status: SyncStatus, retries: u32) -> PendingSyncRow {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
        PendingSyncRow {
            tenant_id: tenant.into(),
            target: target.into(),
            status,
            attempts: 2,
            retry_count: retries,
            last_error: Some("timeout <b>".into()),
            first_failed_at: Some(at),
            updated_at: at,
        }
    }

    fn rows() -> Vec<PendingSyncRow> {
        vec![
            row("t-1", "crm", SyncStatus::PendingSync, 3),
            row("t-1", "billing", SyncStatus::Failed, 0),
            row("t-2", "crm", SyncStatus::Synced, 0),
        ]
    }

    #[test]
    fn an_admin_gets_forms_on_pending_rows_only() {
        let html = table(
            &rows(),
            "pending_sync",
            Viewer {
                actions: Some("tok"),
            },
        )
        .into_string();
        assert_eq!(html.matches(r#"<form class="retry""#).count(), 1);
        assert_eq!(html.matches(r#"<form class="abandon""#).count(), 1);
        assert!(html.contains(r#"<tr data-tenant="t-1" data-target="crm">"#));
        assert!(html.contains(r#"<td class="retry-count">3</td>"#));
        assert!(html.contains(r#"href="/ui/tenants/t-1""#));
        assert!(html.contains(r#"name="csrf" value="tok""#));
        assert!(html.contains(r#"name="status" value="pending_sync""#));
        assert!(html.contains(r#"<label for="reason-0">"#));
        assert!(html.contains(r#"id="reason-0" name="reason" type="text" required"#));
        assert!(html.contains("timeout &lt;b&gt;"));
    }

    #[test]
    fn an_auditor_gets_no_forms() {
        let html = table(&rows(), "", Viewer { actions: None }).into_string();
        assert!(!html.contains("<form"));
        assert!(!html.contains("<button"));
        assert!(!html.contains("Actions"));
        assert_eq!(html.matches("<tr data-tenant=").count(), 3);
    }

    #[test]
    fn an_empty_queue_says_so() {
        let html = table(&[], "", Viewer { actions: None }).into_string();
        assert!(html.contains(r#"id="queue-empty""#));
        assert!(html.contains(r#"<table id="queue">"#));
    }

    #[test]
    fn bodies_carry_the_fields_of_the_command() {
        let form = ActionForm {
            target: Some("crm".into()),
            reason: Some("gone".into()),
            ..ActionForm::default()
        };
        let retry: serde_json::Value = serde_json::from_slice(&Action::Retry.body(&form)).unwrap();
        assert_eq!(retry, serde_json::json!({"target": "crm"}));
        let abandon: serde_json::Value =
            serde_json::from_slice(&Action::Abandon.body(&form)).unwrap();
        assert_eq!(
            abandon,
            serde_json::json!({"target": "crm", "reason": "gone"})
        );
    }
}
