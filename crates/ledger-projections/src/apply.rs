//! The pure part of the projections: how one onboarding event changes a row, how a batch
//! changes the rows it touches, and what the rows of a folded [`TenantState`] are.
//!
//! Rows follow `ledger_domain::evolve` exactly (a property test checks it): `apply` keeps just
//! the part of the state each table shows. Only event times are used, never the clock, so
//! replaying the same log always gives the same rows.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use chrono::{DateTime, Utc};
use ledger_domain::{Phase, Stage, SyncStatus, TenantEvent, TenantState};

use crate::Kind;
use crate::batch::{Batch, Change};
use crate::rows::{LockRow, PendingSyncRow, RowKey, Rows, TenantPhaseRow};

/// Whether an event changes rows of `kind`.
pub fn concerns(kind: Kind, event: &TenantEvent) -> bool {
    use TenantEvent::*;
    match kind {
        Kind::TenantPhase => true,
        Kind::OnboardingLocks => {
            matches!(
                event,
                OnboardingLockAcquired { .. } | OnboardingLockReleased { .. }
            )
        }
        Kind::PendingSyncs => matches!(
            event,
            BackendSyncFailed { .. }
                | BackendSyncRetried { .. }
                | BackendSynced { .. }
                | BackendSyncAbandoned { .. }
        ),
    }
}

/// The key of the row of `kind` that `change` applies to, borrowed from the change: the tenant
/// and the target (`pending_syncs` only); `None` when the event does not concern `kind`.
pub fn key_of(kind: Kind, change: &Change) -> Option<(&str, Option<&str>)> {
    use TenantEvent::*;
    let tenant = change.tenant_id.as_str();
    match (kind, &change.event) {
        (Kind::TenantPhase, _) => Some((tenant, None)),
        (Kind::OnboardingLocks, OnboardingLockAcquired { .. } | OnboardingLockReleased { .. }) => {
            Some((tenant, None))
        }
        (
            Kind::PendingSyncs,
            BackendSyncFailed { target, .. }
            | BackendSyncRetried { target, .. }
            | BackendSynced { target, .. }
            | BackendSyncAbandoned { target, .. },
        ) => Some((tenant, Some(target.as_str()))),
        _ => None,
    }
}

impl TenantPhaseRow {
    /// The row of a tenant before any event.
    pub fn new(tenant_id: impl Into<String>, at: DateTime<Utc>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            slug: None,
            name: None,
            phase: Phase::NotStarted,
            verifying_payment_at: None,
            creating_organization_at: None,
            setting_up_workspace_at: None,
            generating_api_key_at: None,
            finalizing_at: None,
            completed_at: None,
            last_seq: 0,
            updated_at: at,
        }
    }

    /// When `stage` completed.
    pub fn stage(&self, stage: Stage) -> Option<DateTime<Utc>> {
        match stage {
            Stage::VerifyingPayment => self.verifying_payment_at,
            Stage::CreatingOrganization => self.creating_organization_at,
            Stage::SettingUpWorkspace => self.setting_up_workspace_at,
            Stage::GeneratingApiKey => self.generating_api_key_at,
            Stage::Finalizing => self.finalizing_at,
        }
    }

    fn stage_mut(&mut self, stage: Stage) -> &mut Option<DateTime<Utc>> {
        match stage {
            Stage::VerifyingPayment => &mut self.verifying_payment_at,
            Stage::CreatingOrganization => &mut self.creating_organization_at,
            Stage::SettingUpWorkspace => &mut self.setting_up_workspace_at,
            Stage::GeneratingApiKey => &mut self.generating_api_key_at,
            Stage::Finalizing => &mut self.finalizing_at,
        }
    }

    fn reach(&mut self, stage: Stage, at: DateTime<Utc>) {
        self.phase = self.phase.max(stage.target());
        self.stage_mut(stage).get_or_insert(at);
    }

    /// The row shown for a tenant whose stream folds to `state`, `last_seq` and `updated_at`
    /// being the seq and time of its last event.
    pub fn from_state(
        tenant_id: &str,
        state: &TenantState,
        last_seq: u64,
        updated_at: DateTime<Utc>,
    ) -> Self {
        let mut row = Self::new(tenant_id, updated_at);
        if let Some(r) = &state.registration {
            row.slug = Some(r.slug.clone());
            row.name = Some(r.name.clone());
        }
        row.phase = state.phase;
        for (stage, at) in &state.stages {
            *row.stage_mut(*stage) = Some(*at);
        }
        row.completed_at = state.completed_at;
        row.last_seq = last_seq;
        row
    }
}

/// Applies an onboarding event to a tenant's `tenant_phase` row (created by its first event).
pub fn apply_tenant_phase(row: &mut Option<TenantPhaseRow>, change: &Change) {
    use TenantEvent::*;
    let at = change.event.at();
    let row = row.get_or_insert_with(|| TenantPhaseRow::new(&change.tenant_id, at));
    match &change.event {
        TenantRegistered { slug, name, .. } => {
            row.slug = Some(slug.clone());
            row.name = Some(name.clone());
        }
        PaymentVerified { .. } => row.reach(Stage::VerifyingPayment, at),
        OrganizationCreated { .. } => row.reach(Stage::CreatingOrganization, at),
        WorkspaceProvisioned { .. } => row.reach(Stage::SettingUpWorkspace, at),
        ApiKeyIssued { .. } => row.reach(Stage::GeneratingApiKey, at),
        OnboardingCompleted { .. } => {
            row.reach(Stage::Finalizing, at);
            row.completed_at.get_or_insert(at);
        }
        OnboardingPhaseBackfilled { phase, .. } => {
            row.phase = row.phase.max(*phase);
            if *phase == Phase::Completed {
                row.completed_at.get_or_insert(at);
            }
        }
        OnboardingLockAcquired { .. }
        | OnboardingLockReleased { .. }
        | OnboardingStepFailed { .. }
        | BackendSyncFailed { .. }
        | BackendSyncRetried { .. }
        | BackendSynced { .. }
        | BackendSyncAbandoned { .. } => {}
    }
    row.last_seq = change.seq;
    row.updated_at = at;
}

impl LockRow {
    /// The row shown for a tenant whose stream folds to `state` (`None`: never locked).
    pub fn from_state(tenant_id: &str, state: &TenantState) -> Option<Self> {
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

/// Applies a lock event to a tenant's `onboarding_locks` row.
pub fn apply_lock(row: &mut Option<LockRow>, change: &Change) {
    match &change.event {
        TenantEvent::OnboardingLockAcquired {
            holder,
            at,
            expires_at,
        } => {
            let renewing = row
                .as_ref()
                .filter(|l| l.holder == *holder && l.is_active(*at));
            let acquired_at = renewing.map_or(*at, |l| l.acquired_at);
            *row = Some(LockRow {
                tenant_id: change.tenant_id.clone(),
                holder: holder.clone(),
                acquired_at,
                expires_at: *expires_at,
                released_at: None,
                release_reason: None,
            });
        }
        TenantEvent::OnboardingLockReleased { holder, reason, at } => {
            if let Some(lock) = row.as_mut().filter(|l| l.holder == *holder) {
                lock.released_at = Some(*at);
                lock.release_reason = Some(reason.clone());
            }
        }
        _ => {}
    }
}

impl PendingSyncRow {
    /// The rows shown for a tenant whose stream folds to `state`, in target order.
    pub fn from_state(tenant_id: &str, state: &TenantState) -> Vec<Self> {
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

/// Applies a sync event to the row of its tenant and target in `pending_syncs`.
pub fn apply_sync(row: &mut Option<PendingSyncRow>, change: &Change) {
    use TenantEvent::*;
    let (target, at) = match &change.event {
        BackendSyncFailed { target, at, .. }
        | BackendSyncRetried { target, at }
        | BackendSynced { target, at }
        | BackendSyncAbandoned { target, at, .. } => (target, *at),
        _ => return,
    };
    let s = row.get_or_insert_with(|| PendingSyncRow {
        tenant_id: change.tenant_id.clone(),
        target: target.clone(),
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

/// Folds a batch into the rows it touches: `loaded` are the current rows of the tenants
/// [`Batch::tenant_ids`] names (absent rows are new); returns every touched row in key order,
/// to be written back in one statement.
pub fn fold(kind: Kind, loaded: Rows, batch: &Batch) -> Rows {
    match loaded {
        Rows::TenantPhase(rows) => Rows::TenantPhase(fold_rows(
            Kind::TenantPhase,
            rows,
            |r| RowKey::tenant(&r.tenant_id),
            batch,
            apply_tenant_phase,
        )),
        Rows::OnboardingLocks(rows) => Rows::OnboardingLocks(fold_rows(
            Kind::OnboardingLocks,
            rows,
            |r| RowKey::tenant(&r.tenant_id),
            batch,
            apply_lock,
        )),
        Rows::PendingSyncs(rows) => Rows::PendingSyncs(fold_rows(
            Kind::PendingSyncs,
            rows,
            |r| RowKey::target(&r.tenant_id, &r.target),
            batch,
            apply_sync,
        )),
    }
    .check_kind(kind)
}

impl Rows {
    fn check_kind(self, kind: Kind) -> Rows {
        assert_eq!(self.kind(), kind, "rows of another projection were loaded");
        self
    }
}

fn fold_rows<R>(
    kind: Kind,
    loaded: Vec<R>,
    key: impl Fn(&R) -> RowKey,
    batch: &Batch,
    apply: impl Fn(&mut Option<R>, &Change),
) -> Vec<R> {
    // Each row's latest state and whether the batch changed it, in `slots`; indexed by key,
    // borrowed from the loaded rows' keys or from the batch (no key is copied per event).
    let loaded_keys: Vec<RowKey> = loaded.iter().map(key).collect();
    let mut slots: Vec<(Option<R>, bool)> = loaded.into_iter().map(|r| (Some(r), false)).collect();
    let mut index: HashMap<(&str, Option<&str>), usize> =
        HashMap::with_capacity(slots.len() + batch.changes().len() / 4);
    for (i, k) in loaded_keys.iter().enumerate() {
        index.insert((k.tenant_id.as_str(), k.target.as_deref()), i);
    }
    for change in batch.changes() {
        let Some(k) = key_of(kind, change) else {
            continue;
        };
        let i = *index.entry(k).or_insert_with(|| {
            slots.push((None, false));
            slots.len() - 1
        });
        let (row, touched) = &mut slots[i];
        apply(row, change);
        *touched |= row.is_some();
    }
    // In key order, as `RowKey` sorts: by tenant, then target (none first).
    let mut changed: Vec<((&str, Option<&str>), usize)> = index
        .into_iter()
        .filter(|(_, i)| slots[*i].1 && slots[*i].0.is_some())
        .collect();
    changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    changed
        .into_iter()
        .filter_map(|(_, i)| slots[i].0.take())
        .collect()
}

/// The rows of `kind` for one tenant whose whole stream is `events` (seq, event), by the
/// domain's own fold: the reference the projections must equal.
pub fn rows_of_history(kind: Kind, tenant_id: &str, events: &[(u64, TenantEvent)]) -> Rows {
    let Some((last_seq, last)) = events.last() else {
        return Rows::empty(kind);
    };
    let state = ledger_domain::fold(events.iter().map(|(_, e)| e));
    match kind {
        Kind::TenantPhase => Rows::TenantPhase(vec![TenantPhaseRow::from_state(
            tenant_id,
            &state,
            *last_seq,
            last.at(),
        )]),
        Kind::OnboardingLocks => {
            Rows::OnboardingLocks(LockRow::from_state(tenant_id, &state).into_iter().collect())
        }
        Kind::PendingSyncs => Rows::PendingSyncs(PendingSyncRow::from_state(tenant_id, &state)),
    }
}

/// The rows of `kind` for a whole log's onboarding events (in log order), by the domain's
/// fold of each tenant's history: what the projection must hold, in key order.
pub fn reference(kind: Kind, changes: &[Change]) -> Rows {
    let mut tenants: BTreeMap<&str, Vec<(u64, TenantEvent)>> = BTreeMap::new();
    for c in changes {
        tenants
            .entry(c.tenant_id.as_str())
            .or_default()
            .push((c.seq, c.event.clone()));
    }
    let mut all = Rows::empty(kind);
    for (tenant, history) in tenants {
        match (&mut all, rows_of_history(kind, tenant, &history)) {
            (Rows::TenantPhase(a), Rows::TenantPhase(b)) => a.extend(b),
            (Rows::OnboardingLocks(a), Rows::OnboardingLocks(b)) => a.extend(b),
            (Rows::PendingSyncs(a), Rows::PendingSyncs(b)) => a.extend(b),
            _ => unreachable!("rows of one kind"),
        }
    }
    all
}

/// A table of one projection held in memory: rows by key, with [`fold`] applied batch by
/// batch. The in-memory projection store and the tests use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    kind: Kind,
    rows: BTreeMap<RowKey, serde_json::Value>,
}

impl Table {
    /// An empty table of `kind`.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            rows: BTreeMap::new(),
        }
    }

    /// Its projection.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The current rows of `tenant_ids` (every target of each tenant for `pending_syncs`).
    pub fn load(&self, tenant_ids: &[String]) -> Rows {
        let mut picked = Vec::new();
        for id in tenant_ids {
            let from = RowKey::tenant(id.clone());
            for (k, v) in self.rows.range(from..) {
                if k.tenant_id != *id {
                    break;
                }
                picked.push(v.clone());
            }
        }
        Rows::from_json(self.kind, picked).expect("stored rows deserialize")
    }

    /// Writes rows (inserting or replacing by key).
    pub fn upsert(&mut self, rows: &Rows) {
        for (k, v) in rows.keyed_json() {
            self.rows.insert(k, v);
        }
    }

    /// Applies a batch: loads the rows it touches, folds, writes them back.
    pub fn apply(&mut self, batch: &Batch) {
        let loaded = self.load(&batch.tenant_ids(self.kind));
        let changed = fold(self.kind, loaded, batch);
        self.upsert(&changed);
    }

    /// Every row in key order.
    pub fn rows(&self) -> Rows {
        Rows::from_json(self.kind, self.rows.values().cloned().collect())
            .expect("stored rows deserialize")
    }

    /// Rows in key order after `after`, at most `limit`, that `keep` accepts.
    pub fn page(
        &self,
        after: Option<&RowKey>,
        limit: usize,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Rows {
        use std::ops::Bound;
        let lower = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        let picked = self
            .rows
            .range((lower, Bound::Unbounded))
            .map(|(_, v)| v)
            .filter(|v| keep(v))
            .take(limit)
            .cloned()
            .collect();
        Rows::from_json(self.kind, picked).expect("stored rows deserialize")
    }

    /// Replaces one row's JSON (tests use it to tamper with a table).
    pub fn set_raw(&mut self, key: RowKey, row: serde_json::Value) {
        self.rows.insert(key, row);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use ledger_core::Position;

    use super::*;
    use crate::batch::Decoded;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn batch(events: &[TenantEvent]) -> Batch {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| Decoded {
                position: Position(i as u64 + 1),
                change: Some(Change {
                    tenant_id: "a".into(),
                    seq: i as u64 + 1,
                    event: e.clone(),
                }),
            })
            .collect()
    }

    #[test]
    fn a_lock_is_renewed_released_and_taken_over() {
        let events = [
            TenantEvent::OnboardingLockAcquired {
                holder: "tab-1".into(),
                at: t(0),
                expires_at: t(60),
            },
            TenantEvent::OnboardingLockAcquired {
                holder: "tab-1".into(),
                at: t(30),
                expires_at: t(90),
            },
            TenantEvent::OnboardingLockReleased {
                holder: "tab-2".into(),
                reason: "not mine".into(),
                at: t(31),
            },
        ];
        let mut table = Table::new(Kind::OnboardingLocks);
        table.apply(&batch(&events));
        let Rows::OnboardingLocks(rows) = table.rows() else {
            unreachable!()
        };
        assert_eq!(rows[0].acquired_at, t(0));
        assert_eq!(rows[0].expires_at, t(90));
        assert!(rows[0].is_active(t(89)) && !rows[0].is_active(t(90)));
        let release = TenantEvent::OnboardingLockReleased {
            holder: "tab-1".into(),
            reason: "done".into(),
            at: t(40),
        };
        table.apply(&batch(&[release]));
        let Rows::OnboardingLocks(rows) = table.rows() else {
            unreachable!()
        };
        assert_eq!(rows[0].released_at, Some(t(40)));
        assert!(!rows[0].is_active(t(41)));
    }

    #[test]
    fn tenant_rows_follow_the_domain_fold() {
        let events = vec![
            TenantEvent::TenantRegistered {
                slug: "acme".into(),
                name: "Acme".into(),
                at: t(0),
            },
            TenantEvent::PaymentVerified {
                checkout_session_id: "cs".into(),
                at: t(1),
            },
            TenantEvent::OnboardingPhaseBackfilled {
                phase: Phase::Completed,
                at: t(2),
            },
            TenantEvent::OrganizationCreated { at: t(3) },
        ];
        let mut table = Table::new(Kind::TenantPhase);
        table.apply(&batch(&events));
        let history: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u64 + 1, e.clone()))
            .collect();
        assert_eq!(
            table.rows(),
            rows_of_history(Kind::TenantPhase, "a", &history)
        );
        let Rows::TenantPhase(rows) = table.rows() else {
            unreachable!()
        };
        assert_eq!(rows[0].phase, Phase::Completed);
        assert_eq!(rows[0].completed_at, Some(t(2)));
        assert_eq!(rows[0].creating_organization_at, Some(t(3)));
        assert_eq!((rows[0].last_seq, rows[0].updated_at), (4, t(3)));
    }
}
