//! `tenant_phase`: one row per tenant with its registration, the furthest phase reached, when
//! each of the five stages completed and when onboarding completed, as the domain's `evolve`
//! keeps them; plus the seq and time of the tenant's last event.

use chrono::{DateTime, Utc};
use ledger_core::StoreError;
use ledger_domain::{Phase, Stage, TenantEvent};
use ledger_projector::{
    Column, Condition, Index, Key, Keys, ProjectionStore, Query, ReadModel, Record, Row, RowError,
    Rows, Schema, TableSpec, Value,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::change::{Change, TENANT_CATEGORY};
use crate::codec::{PhaseSchema, parse_phase, phase_text, unreadable};
use crate::typed::{self, text_key};

/// The table: one row per tenant.
pub static TABLE: TableSpec = TableSpec {
    name: "tenant_phase",
    columns: &[
        Column::text("tenant_id"),
        Column::text("slug").nullable(),
        Column::text("name").nullable(),
        Column::text("phase"),
        Column::time("verifying_payment_at").nullable(),
        Column::time("creating_organization_at").nullable(),
        Column::time("setting_up_workspace_at").nullable(),
        Column::time("generating_api_key_at").nullable(),
        Column::time("finalizing_at").nullable(),
        Column::time("completed_at").nullable(),
        Column::int("last_seq"),
        Column::time("updated_at"),
    ],
    key: 1,
    indexes: &[Index {
        name: "phase",
        columns: &["phase", "tenant_id"],
        only_null: None,
    }],
};

/// The read model's name, version and table.
pub static SCHEMA: Schema = Schema {
    name: "tenant_phase",
    version: 1,
    tables: &[TABLE],
};

/// The position of the phase among the columns.
const PHASE_COLUMN: usize = 3;

/// A tenant as `tenant_phase` shows it (and the HTTP API lists it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantPhaseRow {
    /// The tenant (the id part of its `tenant-<id>` stream).
    pub tenant_id: String,
    /// Its slug, once registered.
    pub slug: Option<String>,
    /// Its display name, once registered.
    pub name: Option<String>,
    /// The furthest phase reached (a backfill included).
    #[serde(with = "crate::codec::phase_serde")]
    #[schema(value_type = PhaseSchema)]
    pub phase: Phase,
    /// When the payment was verified.
    pub verifying_payment_at: Option<DateTime<Utc>>,
    /// When the organisation was created.
    pub creating_organization_at: Option<DateTime<Utc>>,
    /// When the workspace was provisioned.
    pub setting_up_workspace_at: Option<DateTime<Utc>>,
    /// When the API key was issued.
    pub generating_api_key_at: Option<DateTime<Utc>>,
    /// When the finalising stage completed.
    pub finalizing_at: Option<DateTime<Utc>>,
    /// When onboarding first completed (by a backfill too).
    pub completed_at: Option<DateTime<Utc>>,
    /// The seq of the tenant stream's last event applied.
    pub last_seq: u64,
    /// The time of that event.
    pub updated_at: DateTime<Utc>,
}

impl Record for TenantPhaseRow {
    const TABLE: &'static TableSpec = &TABLE;

    fn from_row(row: Row) -> Result<Self, RowError> {
        let mut c = TABLE.cells(row)?;
        Ok(Self {
            tenant_id: c.text()?,
            slug: c.opt_text()?,
            name: c.opt_text()?,
            phase: {
                let text = c.text()?;
                parse_phase(&text)
                    .ok_or_else(|| unreadable(&TABLE, PHASE_COLUMN, Value::Text(text)))?
            },
            verifying_payment_at: c.opt_time()?,
            creating_organization_at: c.opt_time()?,
            setting_up_workspace_at: c.opt_time()?,
            generating_api_key_at: c.opt_time()?,
            finalizing_at: c.opt_time()?,
            completed_at: c.opt_time()?,
            last_seq: c.uint()?,
            updated_at: c.time()?,
        })
    }

    fn into_row(self) -> Row {
        vec![
            Value::Text(self.tenant_id),
            Value::opt_text(self.slug),
            Value::opt_text(self.name),
            Value::text(phase_text(self.phase)),
            Value::opt_time(self.verifying_payment_at),
            Value::opt_time(self.creating_organization_at),
            Value::opt_time(self.setting_up_workspace_at),
            Value::opt_time(self.generating_api_key_at),
            Value::opt_time(self.finalizing_at),
            Value::opt_time(self.completed_at),
            Value::uint(self.last_seq),
            Value::time(self.updated_at),
        ]
    }

    fn key(&self) -> Key {
        vec![Value::text(self.tenant_id.as_str())]
    }
}

impl TenantPhaseRow {
    /// The row of a tenant before any event, first seen at `at`.
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

    /// When `stage` completed (never for a stage only backfilled).
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

    /// As `evolve` does: the phase moves forward to the stage's, the stage keeps its first time.
    fn reach(&mut self, stage: Stage, at: DateTime<Utc>) {
        self.phase = self.phase.max(stage.target());
        self.stage_mut(stage).get_or_insert(at);
    }

    /// The row of a tenant whose stream folds to `state`, `last_seq` and `updated_at` being
    /// the seq and time of its last event (the reference the read model must equal).
    #[cfg(any(test, feature = "testing"))]
    pub fn from_state(
        tenant_id: &str,
        state: &ledger_domain::TenantState,
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

/// Applies an onboarding event to its tenant's row (created by the tenant's first event),
/// following `ledger_domain::evolve`.
fn evolve_row(row: &mut Option<TenantPhaseRow>, change: &Change) {
    use TenantEvent::*;
    let at = change.event.at();
    let row = row.get_or_insert_with(|| TenantPhaseRow::new(change.tenant_id.as_str(), at));
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
        | BackendSyncAbandoned { .. }
        | TenantErased { .. } => {}
    }
    row.last_seq = change.seq;
    row.updated_at = at;
}

/// The `tenant_phase` read model: every event of a tenant updates its row.
#[derive(Clone, Copy, Debug, Default)]
pub struct TenantPhase;

impl ReadModel<Change> for TenantPhase {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn categories(&self) -> &'static [&'static str] {
        &[TENANT_CATEGORY]
    }

    fn keys(&self, change: &Change, keys: &mut Keys) {
        keys.add(0, text_key(&change.tenant_id).into());
    }

    fn apply(&self, change: &Change, rows: &mut Rows) -> Result<(), RowError> {
        typed::update(rows, 0, &text_key(&change.tenant_id), |row| {
            evolve_row(row, change)
        })
    }
}

/// Which tenants a page of `tenant_phase` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only tenants in this phase.
    pub phase: Option<Phase>,
}

/// The live rows of `tenant_phase` that pass `filter`, in tenant order after the key `after`,
/// at most `limit`.
pub async fn page(
    store: &dyn ProjectionStore,
    filter: TenantFilter,
    after: Option<Key>,
    limit: usize,
) -> Result<Vec<TenantPhaseRow>, StoreError> {
    let mut query = Query::new(&TABLE, limit).after(after);
    if let Some(tenant) = filter.tenant {
        query = query.when(Condition::Eq("tenant_id", Value::Text(tenant)));
    }
    if let Some(phase) = filter.phase {
        query = query.when(Condition::Eq("phase", Value::text(phase_text(phase))));
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

    fn rows(tables: &Tables) -> Vec<TenantPhaseRow> {
        tables
            .rows(&TABLE)
            .into_iter()
            .map(|r| TenantPhaseRow::from_row(r).unwrap())
            .collect()
    }

    /// Applies `events` to tenant `a` one batch each and checks the row against the domain's
    /// fold after every event.
    fn follow(events: &[TenantEvent]) -> TenantPhaseRow {
        let mut tables = Tables::new(&SCHEMA);
        for (i, e) in events.iter().enumerate() {
            let seq = i as u64 + 1;
            tables
                .apply(&TenantPhase, &batch("a", seq, std::slice::from_ref(e)))
                .unwrap();
            let state = ledger_domain::fold(&events[..=i]);
            let want = TenantPhaseRow::from_state("a", &state, seq, e.at());
            assert_eq!(rows(&tables), [want], "after {e:?}");
        }
        rows(&tables).remove(0)
    }

    #[test]
    fn every_event_follows_the_domain_fold() {
        let events = vec![
            TenantEvent::TenantRegistered {
                slug: "acme".into(),
                name: "Acme".into(),
                at: t(0),
            },
            TenantEvent::OnboardingLockAcquired {
                holder: "tab".into(),
                at: t(1),
                expires_at: t(61),
            },
            TenantEvent::PaymentVerified {
                checkout_session_id: "cs".into(),
                at: t(2),
            },
            TenantEvent::OnboardingStepFailed {
                stage: Stage::CreatingOrganization,
                code: "e".into(),
                at: t(3),
            },
            TenantEvent::OrganizationCreated { at: t(4) },
            TenantEvent::BackendSyncFailed {
                target: "crm".into(),
                attempts: 1,
                last_error: "x".into(),
                at: t(5),
            },
            TenantEvent::BackendSyncRetried {
                target: "crm".into(),
                at: t(6),
            },
            TenantEvent::BackendSynced {
                target: "crm".into(),
                at: t(7),
            },
            TenantEvent::BackendSyncAbandoned {
                target: "billing".into(),
                reason: "r".into(),
                at: t(8),
            },
            TenantEvent::WorkspaceProvisioned { at: t(9) },
            TenantEvent::ApiKeyIssued {
                fingerprint: "fp".into(),
                reveal_expires_at: t(7210),
                at: t(10),
            },
            TenantEvent::OnboardingCompleted { at: t(11) },
            TenantEvent::OnboardingCompleted { at: t(12) },
            TenantEvent::OnboardingLockReleased {
                holder: "tab".into(),
                reason: "done".into(),
                at: t(13),
            },
        ];
        let row = follow(&events);
        assert_eq!(row.phase, Phase::Completed);
        assert_eq!(row.verifying_payment_at, Some(t(2)));
        assert_eq!(row.creating_organization_at, Some(t(4)));
        assert_eq!(row.setting_up_workspace_at, Some(t(9)));
        assert_eq!(row.generating_api_key_at, Some(t(10)));
        assert_eq!(row.stage(Stage::Finalizing), Some(t(11)));
        assert_eq!(
            row.completed_at,
            Some(t(11)),
            "a re-completion keeps the first"
        );
        assert_eq!((row.last_seq, row.updated_at), (14, t(13)));
        assert_eq!(
            (row.slug.as_deref(), row.name.as_deref()),
            (Some("acme"), Some("Acme"))
        );
    }

    #[test]
    fn a_backfill_moves_the_phase_but_records_no_stage() {
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
                phase: Phase::WorkspaceProvisioned,
                at: t(2),
            },
            TenantEvent::OnboardingPhaseBackfilled {
                phase: Phase::OrganizationCreated,
                at: t(3),
            },
            TenantEvent::OrganizationCreated { at: t(4) },
            TenantEvent::OnboardingPhaseBackfilled {
                phase: Phase::Completed,
                at: t(5),
            },
            TenantEvent::OnboardingCompleted { at: t(6) },
        ];
        let row = follow(&events);
        assert_eq!(row.phase, Phase::Completed);
        assert_eq!(row.setting_up_workspace_at, None);
        assert_eq!(row.creating_organization_at, Some(t(4)));
        assert_eq!(row.completed_at, Some(t(5)), "completed by the backfill");
        assert_eq!(row.finalizing_at, Some(t(6)));
    }

    #[test]
    fn an_erasure_changes_no_data_of_the_row_only_its_last_seq() {
        let before = vec![
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
        ];
        let mut events = before.clone();
        events.push(TenantEvent::TenantErased { at: t(3) });
        events.push(TenantEvent::TenantErased { at: t(4) });
        let was = follow(&before);
        let row = follow(&events);
        // Like a lock event: the tenant's last event is recorded, nothing else moves (the
        // slug and name stay; once the key is destroyed they read as erased elsewhere).
        assert_eq!((row.last_seq, row.updated_at), (5, t(4)));
        assert_eq!(
            TenantPhaseRow {
                last_seq: was.last_seq,
                updated_at: was.updated_at,
                ..row
            },
            was
        );
    }

    #[test]
    fn events_before_registration_make_a_row_without_slug() {
        let row = follow(&[TenantEvent::OrganizationCreated { at: t(4) }]);
        assert_eq!((row.slug, row.phase), (None, Phase::OrganizationCreated));
        assert_eq!(row.updated_at, t(4));
    }

    #[test]
    fn rows_round_trip_and_serialize_as_the_api_shows_them() {
        let mut row = TenantPhaseRow::new("t-1", t(0) + Duration::microseconds(5));
        row.phase = Phase::PaymentVerified;
        row.verifying_payment_at = Some(t(1));
        row.last_seq = 3;
        assert_eq!(
            TenantPhaseRow::from_row(row.clone().into_row()),
            Ok(row.clone())
        );
        assert_eq!(row.key(), TABLE.key_of(&row.clone().into_row()));
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            json!({
                "tenant_id": "t-1",
                "slug": null,
                "name": null,
                "phase": "PAYMENT_VERIFIED",
                "verifying_payment_at": "2026-01-20T09:00:01Z",
                "creating_organization_at": null,
                "setting_up_workspace_at": null,
                "generating_api_key_at": null,
                "finalizing_at": null,
                "completed_at": null,
                "last_seq": 3,
                "updated_at": "2026-01-20T09:00:00.000005Z",
            })
        );
        let back: TenantPhaseRow =
            serde_json::from_value(serde_json::to_value(&row).unwrap()).unwrap();
        assert_eq!(back, row);
        let mut bad = row.into_row();
        bad[PHASE_COLUMN] = Value::text("DONE");
        assert!(matches!(
            TenantPhaseRow::from_row(bad),
            Err(RowError::Type {
                column: "phase",
                ..
            })
        ));
    }

    #[test]
    fn pages_filter_by_tenant_and_phase() {
        let mut tables = Tables::new(&SCHEMA);
        for (tenant, events) in [
            ("a", vec![TenantEvent::OrganizationCreated { at: t(1) }]),
            ("b", vec![TenantEvent::OnboardingCompleted { at: t(2) }]),
            ("c", vec![TenantEvent::OrganizationCreated { at: t(3) }]),
        ] {
            tables
                .apply(&TenantPhase, &batch(tenant, 1, &events))
                .unwrap();
        }
        let store = FakeStore::new(tables);
        let ids = |filter: TenantFilter, after: Option<&str>, limit| -> Vec<String> {
            let after = after.map(|a| vec![Value::text(a)]);
            futures::executor::block_on(page(&store, filter, after, limit))
                .unwrap()
                .into_iter()
                .map(|r| r.tenant_id)
                .collect()
        };
        assert_eq!(ids(TenantFilter::default(), None, 10), ["a", "b", "c"]);
        assert_eq!(ids(TenantFilter::default(), Some("a"), 1), ["b"]);
        let organized = TenantFilter {
            tenant: None,
            phase: Some(Phase::OrganizationCreated),
        };
        assert_eq!(ids(organized.clone(), None, 10), ["a", "c"]);
        assert_eq!(ids(organized, Some("a"), 10), ["c"]);
        let only_b = TenantFilter {
            tenant: Some("b".into()),
            phase: None,
        };
        assert_eq!(ids(only_b, None, 10), ["b"]);
        let none = TenantFilter {
            tenant: Some("b".into()),
            phase: Some(Phase::NotStarted),
        };
        assert!(ids(none, None, 10).is_empty());
    }
}
