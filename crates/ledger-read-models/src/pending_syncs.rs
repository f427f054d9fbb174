//! `pending_syncs`: the compensation queue, one row per tenant and downstream target, as the
//! domain's `evolve` keeps each sync: `pending_sync` (failed, awaiting a retry), `synced` or
//! `failed` (given up), with the attempts, retries and last error of the current run of
//! failures.

use chrono::{DateTime, Utc};
use ledger_core::StoreError;
use ledger_domain::{SyncStatus, TenantEvent};
use ledger_projector::{
    Column, Condition, Index, Key, Keys, ProjectionStore, Query, ReadModel, Record, Row, RowError,
    Rows, Schema, TableSpec, Value,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::change::{Change, TENANT_CATEGORY};
use crate::codec::{SyncStatusSchema, parse_status, status_text, unreadable};
use crate::typed;

/// The table: one row per tenant and target.
pub static TABLE: TableSpec = TableSpec {
    name: "pending_syncs",
    columns: &[
        Column::text("tenant_id"),
        Column::text("target"),
        Column::text("status"),
        Column::int("attempts"),
        Column::int("retry_count"),
        Column::text("last_error").nullable(),
        Column::time("first_failed_at").nullable(),
        Column::time("updated_at"),
    ],
    key: 2,
    indexes: &[Index {
        name: "status",
        columns: &["status", "tenant_id", "target"],
        only_null: None,
    }],
};

/// The read model's name, version and table.
pub static SCHEMA: Schema = Schema {
    name: "pending_syncs",
    version: 1,
    tables: &[TABLE],
};

/// The positions of the status and the counters among the columns.
const STATUS_COLUMN: usize = 2;
const ATTEMPTS_COLUMN: usize = 3;
const RETRY_COUNT_COLUMN: usize = 4;

/// One tenant's sync with one downstream target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingSyncRow {
    /// The tenant.
    pub tenant_id: String,
    /// The downstream system.
    pub target: String,
    /// `pending_sync`, `synced` or `failed`.
    #[serde(with = "crate::codec::status_serde")]
    #[schema(value_type = SyncStatusSchema)]
    pub status: SyncStatus,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Retries started since the current run of failures began.
    pub retry_count: u32,
    /// The last error (or why it was given up).
    pub last_error: Option<String>,
    /// When the current run of failures began.
    pub first_failed_at: Option<DateTime<Utc>>,
    /// When anything last changed.
    pub updated_at: DateTime<Utc>,
}

/// The next value of `cells`, a count that fits a `u32`.
fn count(cells: &mut ledger_projector::Cells, column: usize) -> Result<u32, RowError> {
    let n = cells.uint()?;
    u32::try_from(n).map_err(|_| unreadable(&TABLE, column, Value::uint(n)))
}

impl Record for PendingSyncRow {
    const TABLE: &'static TableSpec = &TABLE;

    fn from_row(row: Row) -> Result<Self, RowError> {
        let mut c = TABLE.cells(row)?;
        Ok(Self {
            tenant_id: c.text()?,
            target: c.text()?,
            status: {
                let text = c.text()?;
                parse_status(&text)
                    .ok_or_else(|| unreadable(&TABLE, STATUS_COLUMN, Value::Text(text)))?
            },
            attempts: count(&mut c, ATTEMPTS_COLUMN)?,
            retry_count: count(&mut c, RETRY_COUNT_COLUMN)?,
            last_error: c.opt_text()?,
            first_failed_at: c.opt_time()?,
            updated_at: c.time()?,
        })
    }

    fn into_row(self) -> Row {
        vec![
            Value::Text(self.tenant_id),
            Value::Text(self.target),
            Value::text(status_text(self.status)),
            Value::Int(i64::from(self.attempts)),
            Value::Int(i64::from(self.retry_count)),
            Value::opt_text(self.last_error),
            Value::opt_time(self.first_failed_at),
            Value::time(self.updated_at),
        ]
    }

    fn key(&self) -> Key {
        vec![
            Value::text(self.tenant_id.as_str()),
            Value::text(self.target.as_str()),
        ]
    }
}

impl PendingSyncRow {
    /// The rows of a tenant whose stream folds to `state`, in target order.
    #[cfg(any(test, feature = "testing"))]
    pub fn from_state(tenant_id: &str, state: &ledger_domain::TenantState) -> Vec<Self> {
        state
            .syncs
            .iter()
            .map(|(target, s)| PendingSyncRow {
                tenant_id: tenant_id.to_string(),
                target: target.clone(),
                status: s.status,
                attempts: s.attempts,
                retry_count: s.retry_count,
                last_error: s.last_error.clone(),
                first_failed_at: s.first_failed_at,
                updated_at: s.updated_at,
            })
            .collect()
    }
}

/// The target and time of a sync event; `None` for other events.
fn sync_target(event: &TenantEvent) -> Option<(&str, DateTime<Utc>)> {
    use TenantEvent::*;
    match event {
        BackendSyncFailed { target, at, .. }
        | BackendSyncRetried { target, at }
        | BackendSynced { target, at }
        | BackendSyncAbandoned { target, at, .. } => Some((target, *at)),
        _ => None,
    }
}

/// Applies a sync event to the row of its tenant and target, following
/// `ledger_domain::evolve`: a failure starts (or continues) a run of failures, a retry counts,
/// a success or abandonment ends the run.
fn evolve_row(row: &mut Option<PendingSyncRow>, change: &Change, target: &str, at: DateTime<Utc>) {
    use TenantEvent::*;
    let s = row.get_or_insert_with(|| PendingSyncRow {
        tenant_id: change.tenant_id.clone(),
        target: target.to_string(),
        status: SyncStatus::Synced,
        attempts: 0,
        retry_count: 0,
        last_error: None,
        first_failed_at: None,
        updated_at: at,
    });
    match &change.event {
        BackendSyncFailed {
            attempts,
            last_error,
            ..
        } => {
            if s.status != SyncStatus::PendingSync {
                s.first_failed_at = Some(at);
                s.retry_count = 0;
            }
            s.status = SyncStatus::PendingSync;
            s.attempts = *attempts;
            s.last_error = Some(last_error.clone());
        }
        BackendSyncRetried { .. } => s.retry_count += 1,
        BackendSynced { .. } => {
            s.status = SyncStatus::Synced;
            s.attempts = 0;
        }
        BackendSyncAbandoned { reason, .. } => {
            s.status = SyncStatus::Failed;
            s.last_error = Some(reason.clone());
        }
        _ => {}
    }
    s.updated_at = at;
}

/// The `pending_syncs` read model: sync events update the row of their tenant and target.
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingSyncs;

fn key(tenant_id: &str, target: &str) -> [Value; 2] {
    [Value::text(tenant_id), Value::text(target)]
}

impl ReadModel<Change> for PendingSyncs {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn categories(&self) -> &'static [&'static str] {
        &[TENANT_CATEGORY]
    }

    fn keys(&self, change: &Change, keys: &mut Keys) {
        if let Some((target, _)) = sync_target(&change.event) {
            keys.add(0, key(&change.tenant_id, target).into());
        }
    }

    fn apply(&self, change: &Change, rows: &mut Rows) -> Result<(), RowError> {
        let Some((target, at)) = sync_target(&change.event) else {
            return Ok(());
        };
        typed::update(rows, 0, &key(&change.tenant_id, target), |row| {
            evolve_row(row, change, target, at)
        })
    }
}

/// Which syncs a page of `pending_syncs` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncFilter {
    /// Only this tenant's syncs.
    pub tenant: Option<String>,
    /// Only syncs with this status.
    pub status: Option<SyncStatus>,
}

/// The live rows of `pending_syncs` that pass `filter`, in (tenant, target) order after the
/// key `after`, at most `limit`.
pub async fn page(
    store: &dyn ProjectionStore,
    filter: SyncFilter,
    after: Option<Key>,
    limit: usize,
) -> Result<Vec<PendingSyncRow>, StoreError> {
    let mut query = Query::new(&TABLE, limit).after(after);
    if let Some(tenant) = filter.tenant {
        query = query.when(Condition::Eq("tenant_id", Value::Text(tenant)));
    }
    if let Some(status) = filter.status {
        query = query.when(Condition::Eq("status", Value::text(status_text(status))));
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

    fn failed(target: &str, attempts: u32, at: i64) -> TenantEvent {
        TenantEvent::BackendSyncFailed {
            target: target.into(),
            attempts,
            last_error: format!("timeout {attempts}"),
            at: t(at),
        }
    }

    fn retried(target: &str, at: i64) -> TenantEvent {
        TenantEvent::BackendSyncRetried {
            target: target.into(),
            at: t(at),
        }
    }

    fn synced(target: &str, at: i64) -> TenantEvent {
        TenantEvent::BackendSynced {
            target: target.into(),
            at: t(at),
        }
    }

    fn abandoned(target: &str, at: i64) -> TenantEvent {
        TenantEvent::BackendSyncAbandoned {
            target: target.into(),
            reason: "gave up".into(),
            at: t(at),
        }
    }

    fn batch(tenant: &str, first_seq: u64, events: &[TenantEvent]) -> Batch<Change> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let seq = first_seq + i as u64;
                let change = Change {
                    tenant_id: tenant.into(),
                    seq,
                    event: e.clone(),
                };
                (Position(seq), Some(change))
            })
            .collect()
    }

    fn rows(tables: &Tables) -> Vec<PendingSyncRow> {
        tables
            .rows(&TABLE)
            .into_iter()
            .map(|r| PendingSyncRow::from_row(r).unwrap())
            .collect()
    }

    /// Applies `events` to tenant `a` one batch each, checking the rows against the domain's
    /// fold after every event; then all in one batch.
    fn follow(events: &[TenantEvent]) -> Vec<PendingSyncRow> {
        let mut tables = Tables::new(&SCHEMA);
        for (i, e) in events.iter().enumerate() {
            let b = batch("a", i as u64 + 1, std::slice::from_ref(e));
            tables.apply(&PendingSyncs, &b).unwrap();
            let state = ledger_domain::fold(&events[..=i]);
            assert_eq!(
                rows(&tables),
                PendingSyncRow::from_state("a", &state),
                "after {e:?}"
            );
        }
        let mut at_once = Tables::new(&SCHEMA);
        at_once
            .apply(&PendingSyncs, &batch("a", 1, events))
            .unwrap();
        assert_eq!(rows(&at_once), rows(&tables));
        rows(&tables)
    }

    #[test]
    fn a_sync_fails_is_retried_and_succeeds() {
        let rows = follow(&[failed("crm", 1, 0), retried("crm", 1), failed("crm", 2, 2)]);
        let crm = &rows[0];
        assert_eq!(crm.status, SyncStatus::PendingSync);
        assert_eq!((crm.attempts, crm.retry_count), (2, 1));
        assert_eq!(
            crm.first_failed_at,
            Some(t(0)),
            "the run began at the first failure"
        );
        assert_eq!(crm.last_error.as_deref(), Some("timeout 2"));
        assert_eq!(crm.updated_at, t(2));

        let rows = follow(&[failed("crm", 1, 0), retried("crm", 1), synced("crm", 3)]);
        assert_eq!(rows[0].status, SyncStatus::Synced);
        assert_eq!((rows[0].attempts, rows[0].retry_count), (0, 1));
        assert_eq!(
            rows[0].last_error.as_deref(),
            Some("timeout 1"),
            "kept for the record"
        );

        let events = [
            failed("crm", 1, 0),
            retried("crm", 1),
            synced("crm", 2),
            failed("crm", 1, 5),
        ];
        let rows = follow(&events);
        assert_eq!(rows[0].first_failed_at, Some(t(5)), "a new run of failures");
        assert_eq!(rows[0].retry_count, 0);
    }

    #[test]
    fn a_sync_is_abandoned_and_may_fail_again() {
        let rows = follow(&[failed("crm", 1, 0), abandoned("crm", 1)]);
        assert_eq!(rows[0].status, SyncStatus::Failed);
        assert_eq!(rows[0].last_error.as_deref(), Some("gave up"));
        let rows = follow(&[
            failed("crm", 1, 0),
            abandoned("crm", 1),
            failed("crm", 1, 2),
        ]);
        assert_eq!(rows[0].status, SyncStatus::PendingSync);
        assert_eq!(rows[0].first_failed_at, Some(t(2)));
    }

    #[test]
    fn targets_are_rows_of_their_own_and_first_events_of_any_kind_make_one() {
        let rows = follow(&[
            synced("crm", 0),
            retried("billing", 1),
            failed("crm", 1, 2),
            TenantEvent::OrganizationCreated { at: t(3) },
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].target.as_str(), rows[0].retry_count),
            ("billing", 1)
        );
        assert_eq!(
            (rows[1].target.as_str(), rows[1].status),
            ("crm", SyncStatus::PendingSync)
        );
        assert_eq!(rows[1].updated_at, t(2), "other events change nothing");
    }

    #[test]
    fn an_erasure_changes_no_sync_row() {
        let erased = |at| TenantEvent::TenantErased { at: t(at) };
        assert!(follow(&[erased(0)]).is_empty());
        let pending = [failed("crm", 1, 0), retried("crm", 1), synced("billing", 2)];
        let mut then_erased = pending.to_vec();
        then_erased.push(erased(3));
        assert_eq!(follow(&then_erased), follow(&pending));
        let b = batch("a", 1, &[erased(0)]);
        let plan = ledger_projector::Plan::of(&PendingSyncs, &b, None);
        assert!(plan.to_load(0).is_empty(), "no key declared");
    }

    #[test]
    fn a_retry_in_the_batch_after_its_failure_counts() {
        // The regression proptest once found: register, fail, retry, in batches of one.
        let events = [failed("crm", 1, 0), retried("crm", 0)];
        let mut tables = Tables::new(&SCHEMA);
        for (i, e) in events.iter().enumerate() {
            let b = batch("a", i as u64 + 2, std::slice::from_ref(e));
            tables.apply(&PendingSyncs, &b).unwrap();
        }
        assert_eq!(rows(&tables)[0].retry_count, 1);
    }

    #[test]
    fn rows_round_trip_and_serialize_as_the_api_shows_them() {
        let row = PendingSyncRow {
            tenant_id: "t-1".into(),
            target: "crm".into(),
            status: SyncStatus::PendingSync,
            attempts: 3,
            retry_count: 2,
            last_error: Some("timeout".into()),
            first_failed_at: Some(t(0)),
            updated_at: t(5),
        };
        assert_eq!(
            PendingSyncRow::from_row(row.clone().into_row()),
            Ok(row.clone())
        );
        assert_eq!(row.key(), TABLE.key_of(&row.clone().into_row()));
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            json!({
                "tenant_id": "t-1",
                "target": "crm",
                "status": "pending_sync",
                "attempts": 3,
                "retry_count": 2,
                "last_error": "timeout",
                "first_failed_at": "2026-01-20T09:00:00Z",
                "updated_at": "2026-01-20T09:00:05Z",
            })
        );
        let back: PendingSyncRow =
            serde_json::from_value(serde_json::to_value(&row).unwrap()).unwrap();
        assert_eq!(back, row);
        let mut stored = row.clone().into_row();
        assert_eq!(stored[STATUS_COLUMN], Value::text("pending_sync"));
        stored[STATUS_COLUMN] = Value::text("PENDING");
        assert!(PendingSyncRow::from_row(stored).is_err());
        let mut huge = row.into_row();
        huge[ATTEMPTS_COLUMN] = Value::Int(i64::from(u32::MAX) + 1);
        assert!(matches!(
            PendingSyncRow::from_row(huge),
            Err(RowError::Type {
                column: "attempts",
                ..
            })
        ));
    }

    #[test]
    fn pages_filter_by_tenant_and_status() {
        let mut tables = Tables::new(&SCHEMA);
        let histories = [
            ("a", vec![failed("crm", 1, 0), synced("billing", 1)]),
            ("b", vec![failed("crm", 1, 0), abandoned("crm", 1)]),
            ("c", vec![failed("billing", 1, 0)]),
        ];
        for (tenant, events) in histories {
            tables
                .apply(&PendingSyncs, &batch(tenant, 1, &events))
                .unwrap();
        }
        let store = FakeStore::new(tables);
        let keys = |filter: SyncFilter, after: Option<(&str, &str)>, limit| -> Vec<String> {
            let after = after.map(|(a, b)| key(a, b).to_vec());
            futures::executor::block_on(page(&store, filter, after, limit))
                .unwrap()
                .into_iter()
                .map(|r| format!("{}/{}", r.tenant_id, r.target))
                .collect()
        };
        let all = SyncFilter::default();
        assert_eq!(
            keys(all.clone(), None, 10),
            ["a/billing", "a/crm", "b/crm", "c/billing"]
        );
        assert_eq!(keys(all, Some(("a", "billing")), 2), ["a/crm", "b/crm"]);
        let pending = SyncFilter {
            tenant: None,
            status: Some(SyncStatus::PendingSync),
        };
        assert_eq!(keys(pending, None, 10), ["a/crm", "c/billing"]);
        let b_failed = SyncFilter {
            tenant: Some("b".into()),
            status: Some(SyncStatus::Failed),
        };
        assert_eq!(keys(b_failed, None, 10), ["b/crm"]);
    }
}
