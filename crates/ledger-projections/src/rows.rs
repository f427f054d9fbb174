//! The rows of the three read models, as the tables hold them and the API shows them.
//!
//! Times are UTC with microsecond precision (what both databases keep) and serialize as
//! fixed-width RFC 3339 text (`2026-01-20T09:00:00.000000Z`), so they also sort as text.

use chrono::{DateTime, SubsecRound, Utc};
use ledger_domain::{Phase, SyncStatus};
use serde::{Deserialize, Serialize};

use crate::Kind;

/// A time as the projections keep it: truncated to microseconds.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// Serde of times as fixed-width RFC 3339 UTC text with microseconds (any RFC 3339 is read).
pub mod time_text {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// The fixed-width text of a time.
    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// Parses RFC 3339 text (any offset, any precision) into UTC.
    pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
    }

    /// Serializes a time.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    /// Deserializes a time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// The same for optional times.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serializes an optional time.
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::format(t)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes an optional time.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| super::parse(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// A row of `tenant_phase`: one per tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPhaseRow {
    /// The tenant (the id part of its `tenant-<id>` stream).
    pub tenant_id: String,
    /// Its slug, once registered.
    pub slug: Option<String>,
    /// Its display name, once registered.
    pub name: Option<String>,
    /// The furthest phase reached.
    pub phase: Phase,
    /// When the payment was verified.
    #[serde(with = "time_text::option")]
    pub verifying_payment_at: Option<DateTime<Utc>>,
    /// When the organisation was created.
    #[serde(with = "time_text::option")]
    pub creating_organization_at: Option<DateTime<Utc>>,
    /// When the workspace was provisioned.
    #[serde(with = "time_text::option")]
    pub setting_up_workspace_at: Option<DateTime<Utc>>,
    /// When the API key was issued.
    #[serde(with = "time_text::option")]
    pub generating_api_key_at: Option<DateTime<Utc>>,
    /// When the finalising stage completed.
    #[serde(with = "time_text::option")]
    pub finalizing_at: Option<DateTime<Utc>>,
    /// When onboarding first completed (also by a backfill).
    #[serde(with = "time_text::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// The seq of the last event applied from the tenant's stream.
    pub last_seq: u64,
    /// The time of the last event applied.
    #[serde(with = "time_text")]
    pub updated_at: DateTime<Utc>,
}

/// A row of `onboarding_locks`: the last lock of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRow {
    /// The tenant.
    pub tenant_id: String,
    /// Who took it.
    pub holder: String,
    /// When this holder first took it (renewals keep the time).
    #[serde(with = "time_text")]
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    #[serde(with = "time_text")]
    pub expires_at: DateTime<Utc>,
    /// When the holder released it.
    #[serde(with = "time_text::option")]
    pub released_at: Option<DateTime<Utc>>,
    /// Why it was released.
    pub release_reason: Option<String>,
}

impl LockRow {
    /// Whether the lock holds at `now`: not released and not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.released_at.is_none() && self.expires_at > now
    }
}

/// A row of `pending_syncs`: one tenant's sync with one downstream target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSyncRow {
    /// The tenant.
    pub tenant_id: String,
    /// The downstream system.
    pub target: String,
    /// `pending_sync`, `synced` or `failed`.
    pub status: SyncStatus,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Retries started since the current run of failures began.
    pub retry_count: u32,
    /// The last error text (or why it was given up).
    pub last_error: Option<String>,
    /// When the current run of failures began.
    #[serde(with = "time_text::option")]
    pub first_failed_at: Option<DateTime<Utc>>,
    /// When anything last changed.
    #[serde(with = "time_text")]
    pub updated_at: DateTime<Utc>,
}

/// The text a sync status is stored as (`pending_sync`, `synced`, `failed`).
pub fn status_text(status: SyncStatus) -> &'static str {
    match status {
        SyncStatus::PendingSync => "pending_sync",
        SyncStatus::Synced => "synced",
        SyncStatus::Failed => "failed",
    }
}

/// The key of a row: the tenant, and for `pending_syncs` the target too. Keys order rows in
/// tables and pages (byte order of the texts).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowKey {
    /// The tenant.
    pub tenant_id: String,
    /// The target (`pending_syncs` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl RowKey {
    /// The key of a tenant's row.
    pub fn tenant(tenant_id: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            target: None,
        }
    }

    /// The key of a tenant's row for one target.
    pub fn target(tenant_id: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            target: Some(target.into()),
        }
    }
}

/// The values of one column of a set of rows, typed (for backends that bind arrays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// Text values.
    Text(Vec<Option<String>>),
    /// Times.
    Time(Vec<Option<DateTime<Utc>>>),
    /// Integers.
    Int(Vec<i64>),
}

/// Builds the columns of `rows` from per-column accessors.
macro_rules! columns {
    ($rows:expr, $( $name:literal => $kind:ident($get:expr) ),* $(,)?) => {
        vec![ $( ($name, Column::$kind($rows.iter().map($get).collect())) ),* ]
    };
}

/// Rows of one projection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Rows {
    /// `tenant_phase` rows.
    TenantPhase(Vec<TenantPhaseRow>),
    /// `onboarding_locks` rows.
    OnboardingLocks(Vec<LockRow>),
    /// `pending_syncs` rows.
    PendingSyncs(Vec<PendingSyncRow>),
}

impl Rows {
    /// No rows of `kind`.
    pub fn empty(kind: Kind) -> Rows {
        match kind {
            Kind::TenantPhase => Rows::TenantPhase(Vec::new()),
            Kind::OnboardingLocks => Rows::OnboardingLocks(Vec::new()),
            Kind::PendingSyncs => Rows::PendingSyncs(Vec::new()),
        }
    }

    /// Rows of `kind` from JSON objects whose keys are the column names.
    pub fn from_json(kind: Kind, objects: Vec<serde_json::Value>) -> serde_json::Result<Rows> {
        fn each<T: serde::de::DeserializeOwned>(
            objects: Vec<serde_json::Value>,
        ) -> serde_json::Result<Vec<T>> {
            objects.into_iter().map(serde_json::from_value).collect()
        }
        Ok(match kind {
            Kind::TenantPhase => Rows::TenantPhase(each(objects)?),
            Kind::OnboardingLocks => Rows::OnboardingLocks(each(objects)?),
            Kind::PendingSyncs => Rows::PendingSyncs(each(objects)?),
        })
    }

    /// Which projection the rows belong to.
    pub fn kind(&self) -> Kind {
        match self {
            Rows::TenantPhase(_) => Kind::TenantPhase,
            Rows::OnboardingLocks(_) => Kind::OnboardingLocks,
            Rows::PendingSyncs(_) => Kind::PendingSyncs,
        }
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            Rows::TenantPhase(r) => r.len(),
            Rows::OnboardingLocks(r) => r.len(),
            Rows::PendingSyncs(r) => r.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of each row, in order.
    pub fn keys(&self) -> Vec<RowKey> {
        match self {
            Rows::TenantPhase(r) => r.iter().map(|r| RowKey::tenant(&r.tenant_id)).collect(),
            Rows::OnboardingLocks(r) => r.iter().map(|r| RowKey::tenant(&r.tenant_id)).collect(),
            Rows::PendingSyncs(r) => r
                .iter()
                .map(|r| RowKey::target(&r.tenant_id, &r.target))
                .collect(),
        }
    }

    /// Each row with its key, as JSON objects (for diffs and generic handling).
    pub fn keyed_json(&self) -> Vec<(RowKey, serde_json::Value)> {
        fn each<T: Serialize>(keys: Vec<RowKey>, rows: &[T]) -> Vec<(RowKey, serde_json::Value)> {
            keys.into_iter()
                .zip(rows)
                .map(|(k, r)| (k, serde_json::to_value(r).expect("rows serialize")))
                .collect()
        }
        let keys = self.keys();
        match self {
            Rows::TenantPhase(r) => each(keys, r),
            Rows::OnboardingLocks(r) => each(keys, r),
            Rows::PendingSyncs(r) => each(keys, r),
        }
    }

    /// The rows as typed columns, in table order, named as the tables name them.
    pub fn columns(&self) -> Vec<(&'static str, Column)> {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match self {
            Rows::TenantPhase(r) => columns!(r,
                "tenant_id" => Text(|r: &TenantPhaseRow| Some(r.tenant_id.clone())),
                "slug" => Text(|r: &TenantPhaseRow| r.slug.clone()),
                "name" => Text(|r: &TenantPhaseRow| r.name.clone()),
                "phase" => Text(|r: &TenantPhaseRow| Some(r.phase.to_string())),
                "verifying_payment_at" => Time(|r: &TenantPhaseRow| r.verifying_payment_at),
                "creating_organization_at" => Time(|r: &TenantPhaseRow| r.creating_organization_at),
                "setting_up_workspace_at" => Time(|r: &TenantPhaseRow| r.setting_up_workspace_at),
                "generating_api_key_at" => Time(|r: &TenantPhaseRow| r.generating_api_key_at),
                "finalizing_at" => Time(|r: &TenantPhaseRow| r.finalizing_at),
                "completed_at" => Time(|r: &TenantPhaseRow| r.completed_at),
                "last_seq" => Int(|r: &TenantPhaseRow| int(r.last_seq)),
                "updated_at" => Time(|r: &TenantPhaseRow| Some(r.updated_at)),
            ),
            Rows::OnboardingLocks(r) => columns!(r,
                "tenant_id" => Text(|r: &LockRow| Some(r.tenant_id.clone())),
                "holder" => Text(|r: &LockRow| Some(r.holder.clone())),
                "acquired_at" => Time(|r: &LockRow| Some(r.acquired_at)),
                "expires_at" => Time(|r: &LockRow| Some(r.expires_at)),
                "released_at" => Time(|r: &LockRow| r.released_at),
                "release_reason" => Text(|r: &LockRow| r.release_reason.clone()),
            ),
            Rows::PendingSyncs(r) => columns!(r,
                "tenant_id" => Text(|r: &PendingSyncRow| Some(r.tenant_id.clone())),
                "target" => Text(|r: &PendingSyncRow| Some(r.target.clone())),
                "status" => Text(|r: &PendingSyncRow| Some(status_text(r.status).to_string())),
                "attempts" => Int(|r: &PendingSyncRow| i64::from(r.attempts)),
                "retry_count" => Int(|r: &PendingSyncRow| i64::from(r.retry_count)),
                "last_error" => Text(|r: &PendingSyncRow| r.last_error.clone()),
                "first_failed_at" => Time(|r: &PendingSyncRow| r.first_failed_at),
                "updated_at" => Time(|r: &PendingSyncRow| Some(r.updated_at)),
            ),
        }
    }

    /// Splits the rows into those whose tenant satisfies `pred` and the others, keeping order.
    pub fn partition(self, pred: impl Fn(&str) -> bool) -> (Rows, Rows) {
        match self {
            Rows::TenantPhase(r) => {
                let (a, b) = r.into_iter().partition(|r| pred(&r.tenant_id));
                (Rows::TenantPhase(a), Rows::TenantPhase(b))
            }
            Rows::OnboardingLocks(r) => {
                let (a, b) = r.into_iter().partition(|r| pred(&r.tenant_id));
                (Rows::OnboardingLocks(a), Rows::OnboardingLocks(b))
            }
            Rows::PendingSyncs(r) => {
                let (a, b) = r.into_iter().partition(|r| pred(&r.tenant_id));
                (Rows::PendingSyncs(a), Rows::PendingSyncs(b))
            }
        }
    }

    /// The rows as one JSON array of objects (how the backends bind a batch of rows).
    pub fn to_json_array(&self) -> String {
        match self {
            Rows::TenantPhase(r) => serde_json::to_string(r),
            Rows::OnboardingLocks(r) => serde_json::to_string(r),
            Rows::PendingSyncs(r) => serde_json::to_string(r),
        }
        .expect("rows serialize")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_are_fixed_width_text_and_read_back() {
        let t = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
        let row = LockRow {
            tenant_id: "t".into(),
            holder: "h".into(),
            acquired_at: t,
            expires_at: t + chrono::Duration::microseconds(1_500_001),
            released_at: None,
            release_reason: None,
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["acquired_at"], "2026-01-20T09:00:00.000000Z");
        assert_eq!(json["expires_at"], "2026-01-20T09:00:01.500001Z");
        let back: LockRow = serde_json::from_value(json).unwrap();
        assert_eq!(back, row);
        // What PostgreSQL's JSON gives back is read too.
        let pg = serde_json::json!({
            "tenant_id": "t", "holder": "h",
            "acquired_at": "2026-01-20T10:00:00+01:00",
            "expires_at": "2026-01-20T09:00:01.500001+00:00",
            "released_at": null, "release_reason": null,
        });
        assert_eq!(serde_json::from_value::<LockRow>(pg).unwrap(), row);
    }

    #[test]
    fn columns_follow_the_json_field_names() {
        let t = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
        let rows = [
            Rows::TenantPhase(vec![TenantPhaseRow::new("t", t)]),
            Rows::OnboardingLocks(vec![LockRow {
                tenant_id: "t".into(),
                holder: "h".into(),
                acquired_at: t,
                expires_at: t,
                released_at: None,
                release_reason: None,
            }]),
            Rows::PendingSyncs(vec![PendingSyncRow {
                tenant_id: "t".into(),
                target: "crm".into(),
                status: SyncStatus::PendingSync,
                attempts: 1,
                retry_count: 0,
                last_error: None,
                first_failed_at: None,
                updated_at: t,
            }]),
        ];
        for r in rows {
            let names: Vec<&str> = r.columns().iter().map(|(n, _)| *n).collect();
            let json = r.keyed_json().remove(0).1;
            let fields: Vec<&str> = json
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, fields, "{:?}", r.kind());
        }
        assert_eq!(
            serde_json::to_value(SyncStatus::PendingSync).unwrap(),
            status_text(SyncStatus::PendingSync)
        );
    }

    #[test]
    fn partition_splits_by_tenant_in_order() {
        let t = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
        let rows = Rows::TenantPhase(
            ["a", "b", "c", "d"]
                .into_iter()
                .map(|id| TenantPhaseRow::new(id, t))
                .collect(),
        );
        let (yes, no) = rows.partition(|id| id == "b" || id == "d");
        assert_eq!(yes.keys(), [RowKey::tenant("b"), RowKey::tenant("d")]);
        assert_eq!(no.keys(), [RowKey::tenant("a"), RowKey::tenant("c")]);
        let (yes, no) = Rows::empty(Kind::PendingSyncs).partition(|_| true);
        assert!(yes.is_empty() && no.is_empty());
        assert_eq!(yes.kind(), Kind::PendingSyncs);
    }

    #[test]
    fn micros_truncates() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
