//! `GET /v1/tenants/{id}/progress`: the five onboarding stages as Server-Sent Events.
//!
//! The stream first sends every stage already completed, then each one as it completes, and
//! closes after `completed` (onboarding finished) or `failed` (a step failed). It reads the
//! tenant's own stream, woken by this server's appends and polling for other servers'. When the
//! server shuts down, the stream ends with a `shutdown` event whose `retry` tells the client
//! when to reconnect (a new stream sends the completed stages again).

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ledger_core::Seq;
use ledger_domain::{DomainError, Phase, Stage, TenantEvent, TenantState, evolve};
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::follow::TenantFollower;
use crate::input::{ApiPath, tenant_id};
use crate::shutdown::{Draining, shutting_down};
use crate::state::AppState;

/// How long a client should wait before it reconnects after a `shutdown` event.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// The SSE event of one completed stage.
fn stage_event(stage: Stage, at: DateTime<Utc>, seq: Seq) -> Event {
    let index = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0) + 1;
    Event::default().event("stage").data(
        json!({
            "stage": stage,
            "index": index,
            "of": Stage::ALL.len(),
            "completed_at": at,
            "seq": seq,
        })
        .to_string(),
    )
}

/// The stage events for stages in `after` that are not in `before`, in stage order.
fn new_stages(before: &TenantState, after: &TenantState, seq: Seq) -> Vec<Event> {
    Stage::ALL
        .iter()
        .filter(|s| !before.stages.contains_key(s))
        .filter_map(|s| after.stages.get(s).map(|at| stage_event(*s, *at, seq)))
        .collect()
}

/// The closing event, when `state` is finished or failed.
fn closing(state: &TenantState, seq: Seq) -> Option<Event> {
    if let Some(at) = state.completed_at {
        return Some(
            Event::default()
                .event("completed")
                .data(json!({"completed_at": at, "seq": seq}).to_string()),
        );
    }
    state.last_failure.as_ref().map(|f| {
        Event::default()
            .event("failed")
            .data(json!({"stage": f.stage, "code": f.code, "at": f.at, "seq": seq}).to_string())
    })
}

/// The last event of a stream cut by the server's shutdown: reconnect after `retry`.
fn shutdown_event(seq: Seq) -> Event {
    Event::default()
        .event("shutdown")
        .retry(RECONNECT_AFTER)
        .data(
            json!({
                "seq": seq,
                "message": "the server is shutting down: reconnect to follow the remaining stages",
            })
            .to_string(),
        )
}

/// The tenant's onboarding stages as they complete, as Server-Sent Events: `stage` (with
/// `stage`, `index`, `of`, `completed_at`, `seq`) for each completed stage, then `completed`
/// or `failed`, after which the stream closes; or `shutdown` (with `retry`) when the server stops.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/progress",
    tag = "tenants",
    params(("id" = uuid::Uuid, Path, description = "The tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: one `stage` event per completed stage, its `data` a JSON object `{stage, index, of, completed_at, seq}`; then `completed` (`{completed_at, seq}`) or `failed` (`{stage, code, at, seq}`), or `shutdown` with `retry` when the server stops: reconnect", content_type = "text/event-stream"),
        (status = 400, description = "`invalid_tenant_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's token", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn progress(
    caller: Caller,
    State(state): State<AppState>,
    draining: Option<Extension<Draining>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&id)?;
    caller.require_tenant(tenant)?;
    let loaded = state.executor.load(tenant).await?;
    if !loaded.state.is_registered() {
        return Err(DomainError::TenantNotFound.into());
    }
    let mut follower = TenantFollower::new(&state, tenant, loaded.seq);
    let mut draining = draining.map(|Extension(d)| d);
    let events = async_stream::stream! {
        let mut current = loaded.state;
        let seq = loaded.seq;
        for event in new_stages(&TenantState::default(), &current, seq) {
            yield Ok::<Event, Infallible>(event);
        }
        if let Some(end) = closing(&current, seq) {
            yield Ok(end);
            return;
        }
        loop {
            let stopping = tokio::select! {
                () = follower.wake() => false,
                () = shutting_down(&mut draining) => true,
            };
            if stopping {
                yield Ok(shutdown_event(follower.seq()));
                return;
            }
            let read = match follower.read().await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "progress stream: reading the tenant failed");
                    yield Ok(Event::default().event("error").data(json!({"error": e.code()}).to_string()));
                    return;
                }
            };
            for (seq, event) in read {
                let next_state = evolve(current.clone(), &event);
                for e in new_stages(&current, &next_state, seq) {
                    yield Ok(e);
                }
                current = next_state;
                let finished = matches!(
                    event,
                    TenantEvent::OnboardingCompleted { .. }
                        | TenantEvent::OnboardingStepFailed { .. }
                        | TenantEvent::OnboardingPhaseBackfilled { phase: Phase::Completed, .. }
                );
                if finished && let Some(end) = closing(&current, seq) {
                    yield Ok(end);
                    return;
                }
            }
        }
    };
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
