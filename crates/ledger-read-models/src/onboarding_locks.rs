//! `onboarding_locks`: the last onboarding lock of each tenant, released or not, as the
//! domain's `evolve` keeps it. A lock is active at a time `t` when it is not released and
//! expires after `t`; that is judged by the query, never stored (rows depend on events only).

use chrono::{DateTime, Utc};
use ledger_core::StoreError;
use ledger_domain::TenantEvent;
use ledger_projector::{
    Column, Condition, Index, Key, Keys, ProjectionStore, Query, ReadModel, Record, Row, RowError,
    Rows, Schema, TableSpec, Value,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::change::{Change, TENANT_CATEGORY};
use crate::typed::{self, text_key};

/// The table: one row per tenant that ever took the lock.
pub static TABLE: TableSpec = TableSpec {
    name: "onboarding_locks",
    columns: &[
        Column::text("tenant_id"),
        Column::text("holder"),
        Column::time("acquired_at"),
        Column::time("expires_at"),
        Column::time("released_at").nullable(),
        Column::text("release_reason").nullable(),
    ],
    key: 1,
    indexes: &[Index {
        name: "unreleased",
        columns: &["tenant_id"],
        only_null: Some("released_at"),
    }],
};

/// The read model's name, version and table.
pub static SCHEMA: Schema = Schema {
    name: "onboarding_locks",
    version: 1,
    tables: &[TABLE],
};

/// A tenant's last onboarding lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LockRow {
    /// The tenant.
    pub tenant_id: String,
    /// Who took it.
    pub holder: String,
    /// When this holder took it (a renewal keeps the time).
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
    /// Why it was released.
    pub release_reason: Option<String>,
}

impl Record for LockRow {
    const TABLE: &'static TableSpec = &TABLE;

    fn from_row(row: Row) -> Result<Self, RowError> {
        let mut c = TABLE.cells(row)?;
        Ok(Self {
            tenant_id: c.text()?,
            holder: c.text()?,
            acquired_at: c.time()?,
            expires_at: c.time()?,
            released_at: c.opt_time()?,
            release_reason: c.opt_text()?,
        })
    }

    fn into_row(self) -> Row {
        vec![
            Value::Text(self.tenant_id),
            Value::Text(self.holder),
            Value::time(self.acquired_at),
            Value::time(self.expires_at),
            Value::opt_time(self.released_at),
            Value::opt_text(self.release_reason),
        ]
    }

    fn key(&self) -> Key {
        vec![Value::text(self.tenant_id.as_str())]
    }
}

impl LockRow {
    /// Whether the lock holds at `now`: not released and not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.released_at.is_none() && self.expires_at > now
    }

    /// The row of a tenant whose stream folds to `state` (`None`: it never took the lock).
    #[cfg(any(test, feature = "testing"))]
    pub fn from_state(tenant_id: &str, state: &ledger_domain::TenantState) -> Option<Self> {
        state.lock.as_ref().map(|l| LockRow {
            tenant_id: tenant_id.to_string(),
            holder: l.holder.clone(),
            acquired_at: l.acquired_at,
            expires_at: l.expires_at,
            released_at: l.released.as_ref().map(|r| r.at),
            release_reason: l.released.as_ref().map(|r| r.reason.clone()),
        })
    }
}

/// A lock as the HTTP API lists it: the row, and whether it holds at the time of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LockItem {
    /// The lock.
    #[serde(flatten)]
    pub lock: LockRow,
    /// Whether it holds now: not released and not expired.
    pub active: bool,
}

impl LockItem {
    /// The lock as seen at `now`.
    pub fn at(lock: LockRow, now: DateTime<Utc>) -> Self {
        Self {
            active: lock.is_active(now),
            lock,
        }
    }
}

/// Applies a lock event to its tenant's row, following `ledger_domain::evolve`: an acquisition
/// replaces the lock (keeping `acquired_at` when its active holder renews it); a release by
/// the holder marks it released; a release by anyone else changes nothing.
fn evolve_row(row: &mut Option<LockRow>, change: &Change) {
    match &change.event {
        TenantEvent::OnboardingLockAcquired {
            holder,
            at,
            expires_at,
        } => match row {
            Some(lock) => {
                if lock.holder != *holder || !lock.is_active(*at) {
                    lock.holder.clone_from(holder);
                    lock.acquired_at = *at;
                }
                lock.expires_at = *expires_at;
                lock.released_at = None;
                lock.release_reason = None;
            }
            None => {
                *row = Some(LockRow {
                    tenant_id: change.tenant_id.clone(),
                    holder: holder.clone(),
                    acquired_at: *at,
                    expires_at: *expires_at,
                    released_at: None,
                    release_reason: None,
                })
            }
        },
        TenantEvent::OnboardingLockReleased { holder, reason, at } => {
            if let Some(lock) = row.as_mut().filter(|l| l.holder == *holder) {
                lock.released_at = Some(*at);
                lock.release_reason = Some(reason.clone());
            }
        }
        _ => {}
    }
}

/// Whether an event concerns the locks.
fn is_lock_event(event: &TenantEvent) -> bool {
    matches!(
        event,
        TenantEvent::OnboardingLockAcquired { .. } | TenantEvent::OnboardingLockReleased { .. }
    )
}

/// The `onboarding_locks` read model: lock events update their tenant's row.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnboardingLocks;

impl ReadModel<Change> for OnboardingLocks {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn categories(&self) -> &'static [&'static str] {
        &[TENANT_CATEGORY]
    }

    fn keys(&self, change: &Change, keys: &mut Keys) {
        if is_lock_event(&change.event) {
            keys.add(0, text_key(&change.tenant_id).into());
        }
    }

    fn apply(&self, change: &Change, rows: &mut Rows) -> Result<(), RowError> {
        if !is_lock_event(&change.event) {
            return Ok(());
        }
        typed::update(rows, 0, &text_key(&change.tenant_id), |row| {
            evolve_row(row, change)
        })
    }
}

/// Which locks a page of `onboarding_locks` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockFilter {
    /// Only this tenant's lock.
    pub tenant: Option<String>,
    /// Only locks active at this time: not released, and expiring after it.
    pub active_at: Option<DateTime<Utc>>,
}

/// The live rows of `onboarding_locks` that pass `filter`, in tenant order after the key
/// `after`, at most `limit`.
pub async fn page(
    store: &dyn ProjectionStore,
    filter: LockFilter,
    after: Option<Key>,
    limit: usize,
) -> Result<Vec<LockRow>, StoreError> {
    let mut query = Query::new(&TABLE, limit).after(after);
    if let Some(tenant) = filter.tenant {
        query = query.when(Condition::Eq("tenant_id", Value::Text(tenant)));
    }
    if let Some(t) = filter.active_at {
        // Rows keep microseconds: `expires_at > t` is `expires_at > t truncated`.
        query = query
            .when(Condition::IsNull("released_at"))
            .when(Condition::Gt("expires_at", Value::time(t)));
    }
    typed::query(store, query).await
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use ledger_core::Position;
    use ledger_projector::{Batch, Tables};
    use serde_json::json;

    use super::*;
    use crate::typed::fake::FakeStore;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn acquire(holder: &str, at: i64, ttl: i64) -> TenantEvent {
        TenantEvent::OnboardingLockAcquired {
            holder: holder.into(),
            at: t(at),
            expires_at: t(at + ttl),
        }
    }

    fn release(holder: &str, at: i64) -> TenantEvent {
        TenantEvent::OnboardingLockReleased {
            holder: holder.into(),
            reason: format!("{holder} is done"),
            at: t(at),
        }
    }

    fn batch(tenant: &str, events: &[TenantEvent]) -> Batch<Change> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let change = Change {
                    tenant_id: tenant.into(),
                    seq: i as u64 + 1,
                    event: e.clone(),
                };
                (Position(i as u64 + 1), Some(change))
            })
            .collect()
    }

    fn lock(tables: &Tables) -> Option<LockRow> {
        let rows = tables.rows(&TABLE);
        assert!(rows.len() <= 1);
        rows.into_iter()
            .next()
            .map(|r| LockRow::from_row(r).unwrap())
    }

    /// Applies `events` one batch each, checking the row against the domain's fold each time.
    fn follow(events: &[TenantEvent]) -> Option<LockRow> {
        let mut tables = Tables::new(&SCHEMA);
        for (i, e) in events.iter().enumerate() {
            tables
                .apply(&OnboardingLocks, &batch("a", std::slice::from_ref(e)))
                .unwrap();
            let state = ledger_domain::fold(&events[..=i]);
            assert_eq!(
                lock(&tables),
                LockRow::from_state("a", &state),
                "after {e:?}"
            );
        }
        lock(&tables)
    }

    #[test]
    fn a_lock_is_renewed_released_and_taken_over() {
        let row = follow(&[acquire("tab-1", 0, 60), acquire("tab-1", 30, 60)]).unwrap();
        assert_eq!((row.acquired_at, row.expires_at), (t(0), t(90)), "renewed");
        assert!(row.is_active(t(89)) && !row.is_active(t(90)));

        let row = follow(&[acquire("tab-1", 0, 60), release("tab-2", 10)]).unwrap();
        assert_eq!(row.released_at, None, "only the holder releases");

        let row = follow(&[acquire("tab-1", 0, 60), release("tab-1", 10)]).unwrap();
        assert_eq!(row.released_at, Some(t(10)));
        assert_eq!(row.release_reason.as_deref(), Some("tab-1 is done"));
        assert!(!row.is_active(t(11)));

        let events = [
            acquire("tab-1", 0, 60),
            release("tab-1", 10),
            acquire("tab-1", 20, 60),
        ];
        let row = follow(&events).unwrap();
        assert_eq!(
            (row.acquired_at, row.released_at),
            (t(20), None),
            "taken again"
        );
        assert_eq!(row.release_reason, None);

        let row = follow(&[acquire("tab-1", 0, 60), acquire("tab-1", 60, 60)]).unwrap();
        assert_eq!(row.acquired_at, t(60), "an expired lock is taken anew");

        let row = follow(&[acquire("tab-1", 0, 60), acquire("tab-2", 70, 60)]).unwrap();
        assert_eq!((row.holder.as_str(), row.acquired_at), ("tab-2", t(70)));

        let row = follow(&[acquire("tab-1", 0, 60), acquire("tab-2", 30, 60)]).unwrap();
        assert_eq!(row.holder, "tab-2", "a takeover the log holds is applied");
        assert_eq!(row.acquired_at, t(30));
    }

    #[test]
    fn other_events_and_stray_releases_make_no_row() {
        assert_eq!(follow(&[release("tab-1", 0)]), None);
        let others = [
            TenantEvent::OrganizationCreated { at: t(0) },
            TenantEvent::BackendSynced {
                target: "crm".into(),
                at: t(1),
            },
        ];
        assert_eq!(follow(&others), None);
        let b = batch("a", &others);
        let plan = ledger_projector::Plan::of(&OnboardingLocks, &b, None);
        assert!(plan.to_load(0).is_empty(), "no key declared");
    }

    #[test]
    fn an_erasure_changes_no_lock_row() {
        let erased = |at| TenantEvent::TenantErased { at: t(at) };
        assert_eq!(follow(&[erased(0)]), None);
        let held = follow(&[acquire("tab-1", 0, 60)]);
        assert_eq!(follow(&[acquire("tab-1", 0, 60), erased(10)]), held);
        let released = follow(&[acquire("tab-1", 0, 60), release("tab-1", 5)]);
        assert_eq!(
            follow(&[acquire("tab-1", 0, 60), release("tab-1", 5), erased(10)]),
            released
        );
        let b = batch("a", &[erased(0)]);
        let plan = ledger_projector::Plan::of(&OnboardingLocks, &b, None);
        assert!(plan.to_load(0).is_empty(), "no key declared");
    }

    #[test]
    fn rows_round_trip_and_items_serialize_as_the_api_shows_them() {
        let row = LockRow {
            tenant_id: "t-1".into(),
            holder: "tab-1".into(),
            acquired_at: t(0),
            expires_at: t(60) + Duration::microseconds(250),
            released_at: None,
            release_reason: None,
        };
        assert_eq!(LockRow::from_row(row.clone().into_row()), Ok(row.clone()));
        assert_eq!(row.key(), TABLE.key_of(&row.clone().into_row()));
        let item = LockItem::at(row.clone(), t(60));
        // The fields in the order the API has always shown them, `active` last.
        assert_eq!(
            serde_json::to_string(&item).unwrap(),
            concat!(
                r#"{"tenant_id":"t-1","holder":"tab-1","acquired_at":"2026-01-20T09:00:00Z","#,
                r#""expires_at":"2026-01-20T09:01:00.000250Z","released_at":null,"#,
                r#""release_reason":null,"active":true}"#
            )
        );
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({
                "tenant_id": "t-1",
                "holder": "tab-1",
                "acquired_at": "2026-01-20T09:00:00Z",
                "expires_at": "2026-01-20T09:01:00.000250Z",
                "released_at": null,
                "release_reason": null,
                "active": true,
            })
        );
        assert!(!LockItem::at(row, t(61)).active);
    }

    #[test]
    fn pages_filter_by_tenant_and_activity() {
        let mut tables = Tables::new(&SCHEMA);
        let histories = [
            ("a", vec![acquire("tab-1", 0, 60)]),
            ("b", vec![acquire("tab-1", 0, 60), release("tab-1", 5)]),
            ("c", vec![acquire("tab-1", 0, 30)]),
            ("d", vec![acquire("tab-1", 0, 90)]),
        ];
        for (tenant, events) in histories {
            tables
                .apply(&OnboardingLocks, &batch(tenant, &events))
                .unwrap();
        }
        let store = FakeStore::new(tables);
        let ids = |filter: LockFilter, after: Option<&str>, limit| -> Vec<String> {
            let after = after.map(|a| vec![Value::text(a)]);
            futures::executor::block_on(page(&store, filter, after, limit))
                .unwrap()
                .into_iter()
                .map(|r| r.tenant_id)
                .collect()
        };
        assert_eq!(ids(LockFilter::default(), None, 10), ["a", "b", "c", "d"]);
        let active = |s: i64| LockFilter {
            tenant: None,
            active_at: Some(t(s)),
        };
        assert_eq!(ids(active(10), None, 10), ["a", "c", "d"]);
        assert_eq!(ids(active(30), None, 10), ["a", "d"], "c expires at 30");
        let just_before = LockFilter {
            tenant: None,
            active_at: Some(t(30) - Duration::nanoseconds(1)),
        };
        assert_eq!(ids(just_before, None, 10), ["a", "c", "d"]);
        assert_eq!(ids(active(10), Some("a"), 1), ["c"]);
        let d = LockFilter {
            tenant: Some("d".into()),
            active_at: Some(t(60)),
        };
        assert_eq!(ids(d, None, 10), ["d"]);
    }
}
