//! `onboarding_funnel`: how tenants move through onboarding, per UTC day of event time (each
//! event's `at`, never the clock, so a rebuild gives the same rows).
//!
//! Every count follows the tenant's phase as `ledger_domain::evolve` keeps it, which only
//! moves forward (a backfill moves it too), so each tenant counts at most once per column. Per
//! day, in `onboarding_funnel` (key `day`, `YYYY-MM-DD`):
//!
//! - `registrations`: tenants registered that day (a tenant's first `TenantRegistered`; a
//!   second one, which `decide` never appends, counts nothing).
//! - `reached_payment_verified`, `reached_organization_created`,
//!   `reached_workspace_provisioned`, `reached_api_key_issued` and `completions` (the arrivals
//!   at `COMPLETED`): tenants whose phase a real step (`PaymentVerified`,
//!   `OrganizationCreated`, `WorkspaceProvisioned`, `ApiKeyIssued`, `OnboardingCompleted`)
//!   moved forward to that phase that day: their first arrival there. A step of a phase the
//!   tenant is already at or past counts nothing, so a re-completion never counts twice, and
//!   an `OnboardingCompleted` after a backfilled completion does not count at all.
//! - `backfilled`: backfills (`OnboardingPhaseBackfilled`) that moved a tenant's phase
//!   forward. A backfill is no progress: it counts in no arrival column, nor as a completion.
//!   The phases a backfill moved a tenant past are never counted as arrivals for it: a later
//!   real step of such a phase leaves the phase where the backfill put it (as `evolve` does;
//!   `decide` ignores such a step anyway, so only a hand-written log holds one) and counts
//!   nothing. Real steps past the backfilled phase count as usual.
//! - `completed_within_1h`, `completed_1h_to_1d`, `completed_1d_to_7d`, `completed_after_7d`:
//!   each completion counted in `completions`, on its day, by the time from the tenant's first
//!   registration to it: under 1 hour (a negative span, from skewed clocks, included), 1 hour
//!   to under 24 hours, 24 hours to under 7 days, 7 days or more. They add up to
//!   `completions`, except for the completion of a tenant not registered before it (only a
//!   hand-written log holds one), which is in no bucket.
//!
//! `onboarding_funnel_tenants` (key `tenant_id`) is the funnel's memory of every tenant that
//! had any of these events: when it first registered, and its furthest phase (backfills
//! included, as in `tenant_phase`).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use ledger_core::StoreError;
use ledger_domain::{Phase, TenantEvent};
use ledger_projector::{
    Column, Condition, Key, Keys, ProjectionStore, Query, ReadModel, Record, Row, RowError, Rows,
    Schema, TableSpec, Value,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::change::{Change, TENANT_CATEGORY};
use crate::codec::{day_text, parse_day, parse_phase, phase_text, unreadable};
use crate::typed::{self, text_key};

/// The funnel per day.
pub static DAYS: TableSpec = TableSpec {
    name: "onboarding_funnel",
    columns: &[
        Column::text("day"),
        Column::int("registrations"),
        Column::int("reached_payment_verified"),
        Column::int("reached_organization_created"),
        Column::int("reached_workspace_provisioned"),
        Column::int("reached_api_key_issued"),
        Column::int("completions"),
        Column::int("backfilled"),
        Column::int("completed_within_1h"),
        Column::int("completed_1h_to_1d"),
        Column::int("completed_1d_to_7d"),
        Column::int("completed_after_7d"),
    ],
    key: 1,
    indexes: &[],
};

/// What the funnel remembers of each tenant.
pub static TENANTS: TableSpec = TableSpec {
    name: "onboarding_funnel_tenants",
    columns: &[
        Column::text("tenant_id"),
        Column::time("first_registered_at").nullable(),
        Column::text("furthest_phase"),
    ],
    key: 1,
    indexes: &[],
};

/// The read model's name, version and tables (days first, then tenants).
pub static SCHEMA: Schema = Schema {
    name: "onboarding_funnel",
    version: 1,
    tables: &[DAYS, TENANTS],
};

/// The tables' places in the schema.
const DAYS_TABLE: usize = 0;
const TENANTS_TABLE: usize = 1;

/// The positions of the texts the rows parse among their columns.
const DAY_COLUMN: usize = 0;
const FURTHEST_PHASE_COLUMN: usize = 2;

/// One UTC day of the onboarding funnel: what that day's events counted, each tenant at most
/// once per column.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunnelDay {
    /// The UTC day of the events counted.
    pub day: NaiveDate,
    /// Tenants registered.
    pub registrations: u64,
    /// Tenants whose payment was verified for the first time (a backfill excluded).
    pub reached_payment_verified: u64,
    /// Tenants whose organisation was created for the first time (a backfill excluded).
    pub reached_organization_created: u64,
    /// Tenants whose workspace was provisioned for the first time (a backfill excluded).
    pub reached_workspace_provisioned: u64,
    /// Tenants whose API key was issued for the first time (a backfill excluded).
    pub reached_api_key_issued: u64,
    /// Tenants whose onboarding completed for the first time (never a re-completion, a
    /// backfill, or a completion after a backfilled one).
    pub completions: u64,
    /// Backfills that moved a tenant's phase forward.
    pub backfilled: u64,
    /// Completions under 1 hour after registration.
    pub completed_within_1h: u64,
    /// Completions 1 hour to under 24 hours after registration.
    pub completed_1h_to_1d: u64,
    /// Completions 24 hours to under 7 days after registration.
    pub completed_1d_to_7d: u64,
    /// Completions 7 days or more after registration.
    pub completed_after_7d: u64,
}

impl Record for FunnelDay {
    const TABLE: &'static TableSpec = &DAYS;

    fn from_row(row: Row) -> Result<Self, RowError> {
        let mut c = DAYS.cells(row)?;
        Ok(Self {
            day: {
                let text = c.text()?;
                parse_day(&text).ok_or_else(|| unreadable(&DAYS, DAY_COLUMN, Value::Text(text)))?
            },
            registrations: c.uint()?,
            reached_payment_verified: c.uint()?,
            reached_organization_created: c.uint()?,
            reached_workspace_provisioned: c.uint()?,
            reached_api_key_issued: c.uint()?,
            completions: c.uint()?,
            backfilled: c.uint()?,
            completed_within_1h: c.uint()?,
            completed_1h_to_1d: c.uint()?,
            completed_1d_to_7d: c.uint()?,
            completed_after_7d: c.uint()?,
        })
    }

    fn into_row(self) -> Row {
        vec![
            Value::Text(day_text(self.day)),
            Value::uint(self.registrations),
            Value::uint(self.reached_payment_verified),
            Value::uint(self.reached_organization_created),
            Value::uint(self.reached_workspace_provisioned),
            Value::uint(self.reached_api_key_issued),
            Value::uint(self.completions),
            Value::uint(self.backfilled),
            Value::uint(self.completed_within_1h),
            Value::uint(self.completed_1h_to_1d),
            Value::uint(self.completed_1d_to_7d),
            Value::uint(self.completed_after_7d),
        ]
    }

    fn key(&self) -> Key {
        vec![Value::Text(day_text(self.day))]
    }
}

/// What the funnel remembers of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelTenant {
    /// The tenant.
    pub tenant_id: String,
    /// When it first registered (`None`: not registered yet).
    pub first_registered_at: Option<DateTime<Utc>>,
    /// The furthest phase it reached, a backfill included.
    #[serde(with = "crate::codec::phase_serde")]
    pub furthest_phase: Phase,
}

impl Record for FunnelTenant {
    const TABLE: &'static TableSpec = &TENANTS;

    fn from_row(row: Row) -> Result<Self, RowError> {
        let mut c = TENANTS.cells(row)?;
        Ok(Self {
            tenant_id: c.text()?,
            first_registered_at: c.opt_time()?,
            furthest_phase: {
                let text = c.text()?;
                parse_phase(&text)
                    .ok_or_else(|| unreadable(&TENANTS, FURTHEST_PHASE_COLUMN, Value::Text(text)))?
            },
        })
    }

    fn into_row(self) -> Row {
        vec![
            Value::Text(self.tenant_id),
            Value::opt_time(self.first_registered_at),
            Value::text(phase_text(self.furthest_phase)),
        ]
    }

    fn key(&self) -> Key {
        vec![Value::text(self.tenant_id.as_str())]
    }
}

/// How long a completion took after registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bucket {
    /// Under 1 hour (or negative).
    Within1h,
    /// 1 hour to under 24 hours.
    Within1hTo1d,
    /// 24 hours to under 7 days.
    Within1dTo7d,
    /// 7 days or more.
    After7d,
}

impl Bucket {
    fn of(span: Duration) -> Bucket {
        if span < Duration::hours(1) {
            Bucket::Within1h
        } else if span < Duration::days(1) {
            Bucket::Within1hTo1d
        } else if span < Duration::days(7) {
            Bucket::Within1dTo7d
        } else {
            Bucket::After7d
        }
    }
}

/// What an event of the funnel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// A registration.
    Registered,
    /// A real step reaching this phase.
    Reached(Phase),
    /// A backfill to this phase.
    Backfilled(Phase),
}

impl Step {
    /// The step an event is; `None` for events the funnel ignores.
    fn of(event: &TenantEvent) -> Option<Step> {
        use TenantEvent::*;
        match event {
            TenantRegistered { .. } => Some(Step::Registered),
            PaymentVerified { .. } => Some(Step::Reached(Phase::PaymentVerified)),
            OrganizationCreated { .. } => Some(Step::Reached(Phase::OrganizationCreated)),
            WorkspaceProvisioned { .. } => Some(Step::Reached(Phase::WorkspaceProvisioned)),
            ApiKeyIssued { .. } => Some(Step::Reached(Phase::ApiKeyIssued)),
            OnboardingCompleted { .. } => Some(Step::Reached(Phase::Completed)),
            OnboardingPhaseBackfilled { phase, .. } => Some(Step::Backfilled(*phase)),
            OnboardingLockAcquired { .. }
            | OnboardingLockReleased { .. }
            | OnboardingStepFailed { .. }
            | BackendSyncFailed { .. }
            | BackendSyncRetried { .. }
            | BackendSynced { .. }
            | BackendSyncAbandoned { .. }
            | TenantErased { .. } => None,
        }
    }
}

/// What one event adds to its day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Count {
    /// A registration.
    Registration,
    /// A first arrival at a phase; for `COMPLETED`, with how long it took when the tenant was
    /// registered.
    Arrival(Phase, Option<Bucket>),
    /// A backfill that moved the phase forward.
    Backfill,
}

impl FunnelTenant {
    fn new(tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_string(),
            first_registered_at: None,
            furthest_phase: Phase::NotStarted,
        }
    }

    /// Takes a step at `at`: what it counts, if anything.
    fn take(&mut self, step: Step, at: DateTime<Utc>) -> Option<Count> {
        match step {
            Step::Registered => {
                if self.first_registered_at.is_some() {
                    return None;
                }
                self.first_registered_at = Some(at);
                Some(Count::Registration)
            }
            Step::Reached(phase) => {
                if self.furthest_phase >= phase {
                    return None;
                }
                self.furthest_phase = phase;
                let bucket = (phase == Phase::Completed)
                    .then(|| self.first_registered_at.map(|r| Bucket::of(at - r)))
                    .flatten();
                Some(Count::Arrival(phase, bucket))
            }
            Step::Backfilled(phase) => {
                if self.furthest_phase >= phase {
                    return None;
                }
                self.furthest_phase = phase;
                Some(Count::Backfill)
            }
        }
    }
}

/// Counts of a day, after its `day` column.
pub const COUNTS: usize = 11;
/// The first counts of a day that are the funnel's own steps, registration to completion.
pub const FUNNEL_STEPS: usize = 6;
/// How a person reads each count of a day, in the order of [`FunnelDay::counts`].
pub const COUNT_LABELS: [&str; COUNTS] = [
    "Registrations",
    "Payment verified",
    "Organisation created",
    "Workspace provisioned",
    "API key issued",
    "Completions",
    "Backfilled",
    "Completed within 1 h",
    "1 h to 1 day",
    "1 to 7 days",
    "After 7 days",
];

impl FunnelDay {
    /// The day's counts in the order of its table's columns after `day`.
    pub fn counts(&self) -> [u64; COUNTS] {
        [
            self.registrations,
            self.reached_payment_verified,
            self.reached_organization_created,
            self.reached_workspace_provisioned,
            self.reached_api_key_issued,
            self.completions,
            self.backfilled,
            self.completed_within_1h,
            self.completed_1h_to_1d,
            self.completed_1d_to_7d,
            self.completed_after_7d,
        ]
    }

    /// The column of each count, in the order of [`FunnelDay::counts`].
    pub fn count_columns() -> impl Iterator<Item = &'static str> {
        DAYS.columns[1..].iter().map(|c| c.name)
    }

    /// A day with nothing counted yet.
    pub fn new(day: NaiveDate) -> Self {
        Self {
            day,
            ..Self::default()
        }
    }

    fn add(&mut self, count: Count) {
        match count {
            Count::Registration => self.registrations += 1,
            Count::Backfill => self.backfilled += 1,
            Count::Arrival(phase, bucket) => {
                let column = match phase {
                    Phase::NotStarted => return,
                    Phase::PaymentVerified => &mut self.reached_payment_verified,
                    Phase::OrganizationCreated => &mut self.reached_organization_created,
                    Phase::WorkspaceProvisioned => &mut self.reached_workspace_provisioned,
                    Phase::ApiKeyIssued => &mut self.reached_api_key_issued,
                    Phase::Completed => &mut self.completions,
                };
                *column += 1;
                if let Some(bucket) = bucket {
                    *match bucket {
                        Bucket::Within1h => &mut self.completed_within_1h,
                        Bucket::Within1hTo1d => &mut self.completed_1h_to_1d,
                        Bucket::Within1dTo7d => &mut self.completed_1d_to_7d,
                        Bucket::After7d => &mut self.completed_after_7d,
                    } += 1;
                }
            }
        }
    }
}

/// The key of the day of `at` (UTC).
fn day_key(at: DateTime<Utc>) -> [Value; 1] {
    [Value::Text(day_text(at.date_naive()))]
}

/// The `onboarding_funnel` read model: registrations, steps and backfills update their
/// tenant's memory, and the day of the event when they count.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnboardingFunnel;

impl ReadModel<Change> for OnboardingFunnel {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn categories(&self) -> &'static [&'static str] {
        &[TENANT_CATEGORY]
    }

    fn keys(&self, change: &Change, keys: &mut Keys) {
        if Step::of(&change.event).is_some() {
            keys.add(TENANTS_TABLE, text_key(&change.tenant_id).into());
            keys.add(DAYS_TABLE, day_key(change.event.at()).into());
        }
    }

    fn apply(&self, change: &Change, rows: &mut Rows) -> Result<(), RowError> {
        let Some(step) = Step::of(&change.event) else {
            return Ok(());
        };
        let at = change.event.at();
        let count = typed::update(rows, TENANTS_TABLE, &text_key(&change.tenant_id), |row| {
            row.get_or_insert_with(|| FunnelTenant::new(&change.tenant_id))
                .take(step, at)
        })?;
        let Some(count) = count else {
            return Ok(());
        };
        typed::update(rows, DAYS_TABLE, &day_key(at), |row| {
            row.get_or_insert_with(|| FunnelDay::new(at.date_naive()))
                .add(count)
        })
    }
}

/// The live days of the funnel from `from` to `to` (both included, either open) whose key
/// comes after `after`, in day order, at most `limit`.
pub async fn days(
    store: &dyn ProjectionStore,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    after: Option<Key>,
    limit: usize,
) -> Result<Vec<FunnelDay>, StoreError> {
    typed::query(store, days_query(from, to, after, limit)).await
}

/// The query of [`days`], which [`crate::as_of::FunnelAsOf`] runs on rows in memory.
pub(crate) fn days_query(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    after: Option<Key>,
    limit: usize,
) -> Query {
    let mut query = Query::new(&DAYS, limit).after(after);
    if let Some(from) = from {
        query = query.when(Condition::Ge("day", Value::Text(day_text(from))));
    }
    if let Some(to) = to {
        query = query.when(Condition::Le("day", Value::Text(day_text(to))));
    }
    query
}

/// The funnel of whole tenant histories, computed straight from each history with the
/// domain's `evolve` (the reference the read model must equal): the days with anything
/// counted, in day order, and the tenants with any funnel event, in tenant order.
#[cfg(any(test, feature = "testing"))]
pub fn reference<'a>(
    histories: impl IntoIterator<Item = (&'a str, &'a [TenantEvent])>,
) -> (Vec<FunnelDay>, Vec<FunnelTenant>) {
    use TenantEvent::*;
    use std::collections::BTreeMap;

    fn day_of(days: &mut BTreeMap<NaiveDate, FunnelDay>, date: NaiveDate) -> &mut FunnelDay {
        days.entry(date).or_insert_with(|| FunnelDay::new(date))
    }

    let mut days: BTreeMap<NaiveDate, FunnelDay> = BTreeMap::new();
    let mut tenants = BTreeMap::new();
    for (tenant, events) in histories {
        let mut state = ledger_domain::TenantState::default();
        let mut registered: Option<DateTime<Utc>> = None;
        let mut in_funnel = false;
        for event in events {
            let before = state.phase;
            state = ledger_domain::evolve(state, event);
            let at = event.at();
            let date = at.date_naive();
            let moved = state.phase > before;
            match event {
                TenantRegistered { .. } => {
                    in_funnel = true;
                    if registered.is_none() {
                        registered = Some(at);
                        day_of(&mut days, date).registrations += 1;
                    }
                }
                OnboardingPhaseBackfilled { .. } => {
                    in_funnel = true;
                    if moved {
                        day_of(&mut days, date).backfilled += 1;
                    }
                }
                PaymentVerified { .. }
                | OrganizationCreated { .. }
                | WorkspaceProvisioned { .. }
                | ApiKeyIssued { .. }
                | OnboardingCompleted { .. } => {
                    in_funnel = true;
                    if !moved {
                        continue;
                    }
                    let d = day_of(&mut days, date);
                    match state.phase {
                        Phase::NotStarted => unreachable!("a step moves the phase past it"),
                        Phase::PaymentVerified => d.reached_payment_verified += 1,
                        Phase::OrganizationCreated => d.reached_organization_created += 1,
                        Phase::WorkspaceProvisioned => d.reached_workspace_provisioned += 1,
                        Phase::ApiKeyIssued => d.reached_api_key_issued += 1,
                        Phase::Completed => {
                            d.completions += 1;
                            if let Some(r) = registered {
                                let hours = (at - r).num_microseconds().unwrap_or(i64::MAX) as f64
                                    / 3_600e6;
                                if hours < 1.0 {
                                    d.completed_within_1h += 1;
                                } else if hours < 24.0 {
                                    d.completed_1h_to_1d += 1;
                                } else if hours < 24.0 * 7.0 {
                                    d.completed_1d_to_7d += 1;
                                } else {
                                    d.completed_after_7d += 1;
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if in_funnel {
            let row = FunnelTenant {
                tenant_id: tenant.to_string(),
                first_registered_at: registered,
                furthest_phase: state.phase,
            };
            tenants.insert(tenant.to_string(), row);
        }
    }
    (
        days.into_values().collect(),
        tenants.into_values().collect(),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use ledger_core::Position;
    use ledger_projector::{Batch, Tables};
    use serde_json::json;

    use super::*;
    use crate::typed::fake::FakeStore;

    #[test]
    fn counts_follow_the_columns() {
        assert_eq!(FunnelDay::count_columns().count(), COUNTS);
        let mut day = FunnelDay::new(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap());
        let row = |d: &FunnelDay| d.clone().into_row();
        for i in 0..COUNTS {
            let before = row(&day);
            let mut cells = day.counts();
            cells[i] = 7;
            day = FunnelDay::from_row(
                std::iter::once(before[0].clone())
                    .chain(cells.iter().map(|n| Value::uint(*n)))
                    .collect(),
            )
            .unwrap();
            assert_eq!(row(&day)[i + 1], Value::uint(7), "count {i}");
            assert_eq!(day.counts()[i], 7);
        }
    }

    /// 2026-01-20 22:00 UTC plus `s` seconds: two hours before a day boundary.
    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 22, 0, 0).unwrap() + Duration::seconds(s)
    }

    const H: i64 = 3600;

    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, d).unwrap()
    }

    fn registered(at: i64) -> TenantEvent {
        TenantEvent::TenantRegistered {
            slug: "acme".into(),
            name: "Acme".into(),
            at: t(at),
        }
    }

    fn paid(at: i64) -> TenantEvent {
        TenantEvent::PaymentVerified {
            checkout_session_id: "cs".into(),
            at: t(at),
        }
    }

    fn organized(at: i64) -> TenantEvent {
        TenantEvent::OrganizationCreated { at: t(at) }
    }

    fn provisioned(at: i64) -> TenantEvent {
        TenantEvent::WorkspaceProvisioned { at: t(at) }
    }

    fn keyed(at: i64) -> TenantEvent {
        TenantEvent::ApiKeyIssued {
            fingerprint: "fp".into(),
            reveal_expires_at: t(at + 2 * H),
            at: t(at),
        }
    }

    fn completed(at: i64) -> TenantEvent {
        TenantEvent::OnboardingCompleted { at: t(at) }
    }

    fn backfilled(phase: Phase, at: i64) -> TenantEvent {
        TenantEvent::OnboardingPhaseBackfilled { phase, at: t(at) }
    }

    /// The whole flow, registration at `at`, each step a minute after the previous one.
    fn flow(at: i64, completion_after: i64) -> Vec<TenantEvent> {
        vec![
            registered(at),
            paid(at + 60),
            organized(at + 120),
            provisioned(at + 180),
            keyed(at + 240),
            completed(at + completion_after),
        ]
    }

    /// Applies every tenant's events, each event a batch of its own in the order given, and
    /// checks the tables against [`reference`] after each; returns the days.
    fn run(histories: &[(&str, Vec<TenantEvent>)]) -> (Vec<FunnelDay>, Vec<FunnelTenant>) {
        let mut tables = Tables::new(&SCHEMA);
        let mut seen: Vec<(&str, Vec<TenantEvent>)> = Vec::new();
        let mut seqs = std::collections::HashMap::new();
        let mut position = 0;
        // Interleave the tenants: one event of each in turn.
        let longest = histories.iter().map(|(_, e)| e.len()).max().unwrap_or(0);
        for i in 0..longest {
            for (tenant, events) in histories {
                let Some(event) = events.get(i) else {
                    continue;
                };
                position += 1;
                let seq = seqs.entry(*tenant).or_insert(0);
                *seq += 1;
                let change = Change {
                    tenant_id: tenant.to_string(),
                    seq: *seq,
                    event: event.clone(),
                };
                let batch: Batch<Change> =
                    [(Position(position), Some(change))].into_iter().collect();
                tables.apply(&OnboardingFunnel, &batch).unwrap();
                match seen.iter_mut().find(|(t, _)| t == tenant) {
                    Some((_, h)) => h.push(event.clone()),
                    None => seen.push((tenant, vec![event.clone()])),
                }
                let want = reference(seen.iter().map(|(t, h)| (*t, h.as_slice())));
                assert_eq!(typed_rows(&tables), want, "after {tenant}: {event:?}");
            }
        }
        typed_rows(&tables)
    }

    fn typed_rows(tables: &Tables) -> (Vec<FunnelDay>, Vec<FunnelTenant>) {
        let days = tables
            .rows(&DAYS)
            .into_iter()
            .map(|r| FunnelDay::from_row(r).unwrap());
        let tenants = tables
            .rows(&TENANTS)
            .into_iter()
            .map(|r| FunnelTenant::from_row(r).unwrap());
        (days.collect(), tenants.collect())
    }

    #[test]
    fn a_whole_flow_counts_once_per_phase_on_the_days_of_its_events() {
        // Registered 22:00, paid 22:01, ..., completed at 02:00 the next day.
        let (days, tenants) = run(&[("a", flow(0, 4 * H))]);
        let first = FunnelDay {
            registrations: 1,
            reached_payment_verified: 1,
            reached_organization_created: 1,
            reached_workspace_provisioned: 1,
            reached_api_key_issued: 1,
            ..FunnelDay::new(date(20))
        };
        let second = FunnelDay {
            completions: 1,
            completed_1h_to_1d: 1,
            ..FunnelDay::new(date(21))
        };
        assert_eq!(days, [first, second]);
        assert_eq!(
            tenants,
            [FunnelTenant {
                tenant_id: "a".into(),
                first_registered_at: Some(t(0)),
                furthest_phase: Phase::Completed,
            }]
        );
    }

    #[test]
    fn days_are_utc_days_of_event_time() {
        // 23:59:59.999999 is the 20th, midnight is the 21st.
        let last = t(2 * H) - Duration::microseconds(1);
        let events = [
            TenantEvent::TenantRegistered {
                slug: "a".into(),
                name: "A".into(),
                at: last,
            },
            TenantEvent::PaymentVerified {
                checkout_session_id: "cs".into(),
                at: t(2 * H),
            },
        ];
        let (days, _) = run(&[("a", events.to_vec())]);
        assert_eq!(
            days.iter().map(|d| d.day).collect::<Vec<_>>(),
            [date(20), date(21)]
        );
        assert_eq!(
            (days[0].registrations, days[1].reached_payment_verified),
            (1, 1)
        );
    }

    #[test]
    fn re_completions_and_repeated_steps_never_count_twice() {
        let mut events = flow(0, 300);
        events.extend([
            completed(400),
            completed(30 * H),
            paid(31 * H),
            registered(32 * H),
        ]);
        let (days, tenants) = run(&[("a", events)]);
        let total = |f: fn(&FunnelDay) -> u64| days.iter().map(f).sum::<u64>();
        assert_eq!(total(|d| d.completions), 1);
        assert_eq!(total(|d| d.completed_within_1h), 1);
        assert_eq!(total(|d| d.reached_payment_verified), 1);
        assert_eq!(total(|d| d.registrations), 1);
        assert_eq!(days.len(), 1, "nothing counted on later days");
        assert_eq!(
            tenants[0].first_registered_at,
            Some(t(0)),
            "the first registration"
        );
    }

    #[test]
    fn completion_times_fall_in_their_buckets() {
        let cases = [
            ("a", 0, 59 * 60 + 59),
            ("b", 1, H),
            ("c", 2, 24 * H - 1),
            ("d", 3, 24 * H),
            ("e", 4, 7 * 24 * H - 1),
            ("f", 5, 7 * 24 * H),
            ("g", 6, 40 * 24 * H),
        ];
        let histories: Vec<_> = cases
            .iter()
            .map(|(tenant, at, took)| (*tenant, vec![registered(*at), completed(at + took)]))
            .collect();
        let (days, _) = run(&histories);
        let total = |f: fn(&FunnelDay) -> u64| days.iter().map(f).sum::<u64>();
        assert_eq!(total(|d| d.completions), 7);
        assert_eq!(total(|d| d.completed_within_1h), 1);
        assert_eq!(total(|d| d.completed_1h_to_1d), 2);
        assert_eq!(total(|d| d.completed_1d_to_7d), 2);
        assert_eq!(total(|d| d.completed_after_7d), 2);
        assert_eq!(
            Bucket::of(Duration::seconds(-5)),
            Bucket::Within1h,
            "skewed clocks"
        );
    }

    #[test]
    fn backfills_count_apart_and_skipped_phases_never_count() {
        let events = vec![
            registered(0),
            paid(60),
            // Jumps over ORGANIZATION_CREATED and WORKSPACE_PROVISIONED.
            backfilled(Phase::WorkspaceProvisioned, 120),
            // Neither moves the phase: they count nothing.
            backfilled(Phase::OrganizationCreated, 130),
            organized(140),
            provisioned(150),
            // Past the backfilled phase: a real first arrival.
            keyed(160),
            completed(170),
        ];
        let (days, tenants) = run(&[("a", events)]);
        assert_eq!(
            days,
            [FunnelDay {
                registrations: 1,
                reached_payment_verified: 1,
                reached_api_key_issued: 1,
                completions: 1,
                completed_within_1h: 1,
                backfilled: 1,
                ..FunnelDay::new(date(20))
            }]
        );
        assert_eq!(tenants[0].furthest_phase, Phase::Completed);
    }

    #[test]
    fn a_backfilled_completion_is_no_completion_nor_is_a_later_real_one() {
        let events = vec![
            registered(0),
            backfilled(Phase::Completed, 60),
            completed(120),
            backfilled(Phase::Completed, 180),
        ];
        let (days, tenants) = run(&[("a", events)]);
        assert_eq!(
            days,
            [FunnelDay {
                registrations: 1,
                backfilled: 1,
                ..FunnelDay::new(date(20))
            }]
        );
        assert_eq!(tenants[0].furthest_phase, Phase::Completed);
    }

    #[test]
    fn unregistered_tenants_count_arrivals_but_no_completion_time() {
        let (days, tenants) = run(&[("a", vec![paid(0), completed(60), registered(120)])]);
        assert_eq!(
            days,
            [FunnelDay {
                registrations: 1,
                reached_payment_verified: 1,
                completions: 1,
                ..FunnelDay::new(date(20))
            }]
        );
        assert_eq!(tenants[0].first_registered_at, Some(t(120)));
    }

    #[test]
    fn an_erasure_counts_nothing_and_keeps_the_tenant_row() {
        let erased = |at| TenantEvent::TenantErased { at: t(at) };
        let flow_a = flow(0, 4 * H);
        let mut then_erased = flow_a.clone();
        then_erased.push(erased(5 * H));
        let (days, tenants) = run(&[("a", flow_a)]);
        assert_eq!(run(&[("a", then_erased)]), (days, tenants));
        // An erasure alone (an arbitrary history) puts no tenant in the funnel.
        assert_eq!(run(&[("b", vec![erased(0)])]), (vec![], vec![]));
        let change = Change {
            tenant_id: "a".into(),
            seq: 1,
            event: erased(0),
        };
        let batch: Batch<Change> = [(Position(1), Some(change))].into_iter().collect();
        let plan = ledger_projector::Plan::of(&OnboardingFunnel, &batch, None);
        assert!(plan.to_load(DAYS_TABLE).is_empty() && plan.to_load(TENANTS_TABLE).is_empty());
    }

    #[test]
    fn other_events_touch_nothing_and_tenants_share_days() {
        let lock = TenantEvent::OnboardingLockAcquired {
            holder: "tab".into(),
            at: t(0),
            expires_at: t(60),
        };
        let failed = TenantEvent::OnboardingStepFailed {
            stage: ledger_domain::Stage::VerifyingPayment,
            code: "e".into(),
            at: t(1),
        };
        let (days, tenants) = run(&[
            ("a", vec![lock.clone(), failed.clone()]),
            ("b", vec![registered(10), paid(20)]),
            ("c", vec![registered(30), lock]),
        ]);
        assert_eq!(
            tenants
                .iter()
                .map(|t| t.tenant_id.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(
            (days[0].registrations, days[0].reached_payment_verified),
            (2, 1)
        );
        let change = Change {
            tenant_id: "a".into(),
            seq: 1,
            event: failed,
        };
        let batch: Batch<Change> = [(Position(1), Some(change))].into_iter().collect();
        let plan = ledger_projector::Plan::of(&OnboardingFunnel, &batch, None);
        assert!(plan.to_load(DAYS_TABLE).is_empty() && plan.to_load(TENANTS_TABLE).is_empty());
    }

    #[test]
    fn rows_round_trip_and_serialize_for_the_api() {
        let day = FunnelDay {
            registrations: 3,
            completions: 2,
            completed_after_7d: 2,
            ..FunnelDay::new(date(20))
        };
        assert_eq!(FunnelDay::from_row(day.clone().into_row()), Ok(day.clone()));
        assert_eq!(day.key(), vec![Value::text("2026-01-20")]);
        assert_eq!(
            serde_json::to_value(&day).unwrap(),
            json!({
                "day": "2026-01-20",
                "registrations": 3,
                "reached_payment_verified": 0,
                "reached_organization_created": 0,
                "reached_workspace_provisioned": 0,
                "reached_api_key_issued": 0,
                "completions": 2,
                "backfilled": 0,
                "completed_within_1h": 0,
                "completed_1h_to_1d": 0,
                "completed_1d_to_7d": 0,
                "completed_after_7d": 2,
            })
        );
        let tenant = FunnelTenant {
            tenant_id: "t".into(),
            first_registered_at: None,
            furthest_phase: Phase::ApiKeyIssued,
        };
        let row = tenant.clone().into_row();
        assert_eq!(row[FURTHEST_PHASE_COLUMN], Value::text("API_KEY_ISSUED"));
        assert_eq!(FunnelTenant::from_row(row), Ok(tenant));
        let mut bad = day.into_row();
        bad[DAY_COLUMN] = Value::text("20 Jan");
        assert!(matches!(
            FunnelDay::from_row(bad),
            Err(RowError::Type { column: "day", .. })
        ));
    }

    #[test]
    fn days_are_queried_by_range() {
        let histories: Vec<_> = (0..5)
            .map(|i| {
                (
                    ["a", "b", "c", "d", "e"][i],
                    vec![registered(i as i64 * 24 * H)],
                )
            })
            .collect();
        let mut tables = Tables::new(&SCHEMA);
        for (i, (tenant, events)) in histories.iter().enumerate() {
            let change = Change {
                tenant_id: tenant.to_string(),
                seq: 1,
                event: events[0].clone(),
            };
            let batch: Batch<Change> = [(Position(i as u64 + 1), Some(change))]
                .into_iter()
                .collect();
            tables.apply(&OnboardingFunnel, &batch).unwrap();
        }
        let store = FakeStore::new(tables);
        let got = |from: Option<u32>, to: Option<u32>, limit| -> Vec<NaiveDate> {
            futures::executor::block_on(days(&store, from.map(date), to.map(date), None, limit))
                .unwrap()
                .into_iter()
                .map(|d| d.day)
                .collect()
        };
        assert_eq!(got(None, None, 10), (20..25).map(date).collect::<Vec<_>>());
        assert_eq!(got(Some(21), Some(23), 10), [date(21), date(22), date(23)]);
        assert_eq!(got(Some(21), None, 2), [date(21), date(22)]);
        assert_eq!(got(None, Some(20), 10), [date(20)]);
        assert!(got(Some(23), Some(22), 10).is_empty());
    }
}
