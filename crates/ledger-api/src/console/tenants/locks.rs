//! `GET /ui/locks`: the onboarding locks held now, and those that ended (released or expired)
//! within the last day, read through `GET /v1/locks`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use ledger_read_models::{LockItem, LockRow};
use maud::{Markup, html};

use super::tenant_href;
use crate::auth::Caller;
use crate::console::page::{page as shell, time};
use crate::console::{ConsoleError, Session};
use crate::error::ApiError;
use crate::input::ApiQuery;
use crate::routes::queries::{self, LocksQuery};
use crate::state::AppState;

/// How far back the page lists ended locks.
const RECENT: TimeDelta = TimeDelta::hours(24);

/// `GET /ui/locks`.
pub(crate) async fn page(
    session: Session,
    State(state): State<AppState>,
) -> Result<Response, ConsoleError> {
    let active = all_locks(&state, &session.caller, true).await?;
    let every = all_locks(&state, &session.caller, false).await?;
    let now = (state.clock)();
    let ended = recently_ended(every.into_iter().map(|i| i.lock), now);
    let body = html! {
        h1 { "Locks" }
        section aria-labelledby="active-heading" {
            h2 id="active-heading" { "Active now" }
            (active_table(&active))
        }
        section aria-labelledby="expired-heading" {
            h2 id="expired-heading" { "Released or expired in the last 24 hours" }
            (ended_table(&ended))
        }
    };
    Ok(shell("Locks", Some(&session), body).into_response())
}

/// Every lock `caller` may see (only the active ones with `active`), every page of
/// `GET /v1/locks` in turn.
async fn all_locks(
    state: &AppState,
    caller: &Caller,
    active: bool,
) -> Result<Vec<LockItem>, ApiError> {
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let q = LocksQuery {
            active: active.then_some(true),
            limit: Some(state.config.max_page_size),
            cursor,
            min_position: None,
        };
        let page = queries::list_locks(caller.clone(), State(state.clone()), ApiQuery(q)).await?;
        items.extend(page.0.items);
        match page.0.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(items),
        }
    }
}

/// When `lock` ended (its release, or its expiry) if it is not active at `now` and ended
/// within [`RECENT`] before `now`.
fn ended_recently(lock: &LockRow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if lock.is_active(now) {
        return None;
    }
    let ended = lock.released_at.unwrap_or(lock.expires_at);
    (ended <= now && now - ended <= RECENT).then_some(ended)
}

/// The locks that ended within [`RECENT`] before `now`, with when: the latest first.
fn recently_ended(
    locks: impl IntoIterator<Item = LockRow>,
    now: DateTime<Utc>,
) -> Vec<(LockRow, DateTime<Utc>)> {
    let mut ended: Vec<_> = locks
        .into_iter()
        .filter_map(|l| ended_recently(&l, now).map(|at| (l, at)))
        .collect();
    ended.sort_by_key(|e| std::cmp::Reverse(e.1));
    ended
}

/// The cell linking to a lock's tenant.
fn tenant_cell(lock: &LockRow) -> Markup {
    html! { td { a href=(tenant_href(&lock.tenant_id)) { (lock.tenant_id) } } }
}

/// The locks held now.
fn active_table(items: &[LockItem]) -> Markup {
    html! {
        div class="table-wrap" tabindex="0" role="region" aria-labelledby="active-heading" {
            table id="active-locks" {
                thead {
                    tr {
                        th scope="col" { "Tenant" }
                        th scope="col" { "Holder" }
                        th scope="col" { "Acquired" }
                        th scope="col" { "Expires" }
                    }
                }
                tbody {
                    @for item in items {
                        tr data-tenant=(item.lock.tenant_id) {
                            (tenant_cell(&item.lock))
                            td { (item.lock.holder) }
                            td { (time(item.lock.acquired_at)) }
                            td { (time(item.lock.expires_at)) }
                        }
                    }
                    @if items.is_empty() {
                        tr { td colspan="4" class="muted" { "No lock is held." } }
                    }
                }
            }
        }
    }
}

/// The locks that ended recently, with when and how.
fn ended_table(ended: &[(LockRow, DateTime<Utc>)]) -> Markup {
    html! {
        div class="table-wrap" tabindex="0" role="region" aria-labelledby="expired-heading" {
            table id="expired-locks" {
                thead {
                    tr {
                        th scope="col" { "Tenant" }
                        th scope="col" { "Holder" }
                        th scope="col" { "Acquired" }
                        th scope="col" { "Expired or released" }
                    }
                }
                tbody {
                    @for (lock, at) in ended {
                        tr data-tenant=(lock.tenant_id) {
                            (tenant_cell(lock))
                            td { (lock.holder) }
                            td { (time(lock.acquired_at)) }
                            td {
                                @if lock.released_at.is_some() { "Released " } @else { "Expired " }
                                (time(*at))
                                @if let Some(reason) = &lock.release_reason { " (" (reason) ")" }
                            }
                        }
                    }
                    @if ended.is_empty() {
                        tr { td colspan="4" class="muted" { "No lock ended in the last 24 hours." } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(h: i64, m: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 0, 0, 0).unwrap()
            + TimeDelta::hours(h)
            + TimeDelta::minutes(m)
    }

    fn lock(id: &str, expires: DateTime<Utc>, released: Option<DateTime<Utc>>) -> LockRow {
        LockRow {
            tenant_id: id.into(),
            holder: "tab-a".into(),
            acquired_at: expires - TimeDelta::minutes(15),
            expires_at: expires,
            released_at: released,
            release_reason: released.map(|_| "done".into()),
        }
    }

    #[test]
    fn only_locks_that_ended_within_a_day_are_recent() {
        let now = t(30, 0);
        let locks = vec![
            lock("active", t(30, 10), None),
            lock("expired-hour-ago", t(29, 0), None),
            lock("expired-two-days-ago", t(-20, 0), None),
            lock("released-just-now", t(30, 10), Some(t(29, 59))),
            lock("released-long-ago", t(5, 0), Some(t(4, 50))),
            lock("expired-a-day-ago", t(6, 0), None),
        ];
        let ended = recently_ended(locks, now);
        let ids: Vec<_> = ended.iter().map(|(l, _)| l.tenant_id.as_str()).collect();
        assert_eq!(
            ids,
            ["released-just-now", "expired-hour-ago", "expired-a-day-ago"]
        );
        assert_eq!(ended[0].1, t(29, 59));
        assert_eq!(
            ended_recently(&lock("edge", t(6, 0) - TimeDelta::seconds(1), None), now),
            None
        );
    }

    #[test]
    fn tables_list_each_lock_with_its_tenant_link() {
        let now = t(30, 0);
        let active = [LockItem::at(lock("t-1", t(30, 10), None), now)];
        let html = active_table(&active).into_string();
        assert!(html.contains(
            r#"<tr data-tenant="t-1"><td><a href="/ui/tenants/t-1">t-1</a></td><td>tab-a</td>"#
        ));
        assert!(active_table(&[]).into_string().contains("No lock is held."));
        let ended = recently_ended([lock("t-2", t(30, 10), Some(t(29, 0)))], now);
        let html = ended_table(&ended).into_string();
        assert!(html.contains(r#"id="expired-locks""#));
        assert!(html.contains("Released <time"));
        assert!(html.contains("(done)"));
    }
}
