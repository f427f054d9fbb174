//! How the read models keep domain values as text: phases, sync statuses and days, one
//! function each way, used for the tables and for JSON alike.

use chrono::{Datelike, NaiveDate};
use ledger_domain::{Phase, SyncStatus};
use ledger_projector::{RowError, TableSpec, Value};
use serde::Serialize;
use utoipa::ToSchema;

/// A phase as the tables and the JSON of rows write it: `NOT_STARTED`, `PAYMENT_VERIFIED`, ...
pub fn phase_text(phase: Phase) -> &'static str {
    match phase {
        Phase::NotStarted => "NOT_STARTED",
        Phase::PaymentVerified => "PAYMENT_VERIFIED",
        Phase::OrganizationCreated => "ORGANIZATION_CREATED",
        Phase::WorkspaceProvisioned => "WORKSPACE_PROVISIONED",
        Phase::ApiKeyIssued => "API_KEY_ISSUED",
        Phase::Completed => "COMPLETED",
    }
}

/// The phase written `text` ([`phase_text`]).
pub fn parse_phase(text: &str) -> Option<Phase> {
    Phase::ALL.into_iter().find(|p| phase_text(*p) == text)
}

/// A sync status as the tables and the JSON of rows write it: `pending_sync`, `synced` or
/// `failed`.
pub fn status_text(status: SyncStatus) -> &'static str {
    match status {
        SyncStatus::PendingSync => "pending_sync",
        SyncStatus::Synced => "synced",
        SyncStatus::Failed => "failed",
    }
}

/// The sync status written `text` ([`status_text`]).
pub fn parse_status(text: &str) -> Option<SyncStatus> {
    [
        SyncStatus::PendingSync,
        SyncStatus::Synced,
        SyncStatus::Failed,
    ]
    .into_iter()
    .find(|s| status_text(*s) == text)
}

/// A day as the tables write it: `YYYY-MM-DD` (so days sort as text), as chrono shows dates.
pub fn day_text(day: NaiveDate) -> String {
    let year = day.year();
    if !(0..=9999).contains(&year) {
        return day.to_string();
    }
    // Ten digits and dashes, without the formatting machinery: a replay writes one per event.
    let digits = |n: u32, width: usize, out: &mut Vec<u8>| {
        for i in (0..width).rev() {
            out.push(b'0' + (n / 10u32.pow(i as u32) % 10) as u8);
        }
    };
    let mut out = Vec::with_capacity(10);
    digits(year.unsigned_abs(), 4, &mut out);
    out.push(b'-');
    digits(day.month(), 2, &mut out);
    out.push(b'-');
    digits(day.day(), 2, &mut out);
    String::from_utf8(out).unwrap_or_else(|_| day.to_string())
}

/// The day written `text` ([`day_text`]).
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    text.parse().ok()
}

/// A value of column `column` of `table` that its row type cannot read.
pub(crate) fn unreadable(table: &'static TableSpec, column: usize, found: Value) -> RowError {
    RowError::Type {
        table: table.name,
        column: table.columns.get(column).map_or("?", |c| c.name),
        found,
    }
}

/// Serde of a phase through [`phase_text`] and [`parse_phase`].
pub(crate) mod phase_serde {
    use ledger_domain::Phase;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(phase: &Phase, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::phase_text(*phase))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_phase(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is no onboarding phase")))
    }
}

/// Serde of a sync status through [`status_text`] and [`parse_status`].
pub(crate) mod status_serde {
    use ledger_domain::SyncStatus;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(status: &SyncStatus, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::status_text(*status))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SyncStatus, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_status(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is no sync status")))
    }
}

/// Onboarding phases, in order (the OpenAPI schema of a row's phase).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = Phase)]
pub enum PhaseSchema {
    /// Registered, nothing done yet.
    NotStarted,
    /// The payment was verified.
    PaymentVerified,
    /// The organisation exists.
    OrganizationCreated,
    /// The workspace is provisioned.
    WorkspaceProvisioned,
    /// An API key was issued.
    ApiKeyIssued,
    /// Onboarding is finished.
    Completed,
}

/// Where a downstream sync stands (the OpenAPI schema of a row's status).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SyncStatus)]
pub enum SyncStatusSchema {
    /// Failed and waiting for compensation.
    PendingSync,
    /// Done.
    Synced,
    /// Given up.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_the_domain_serde_and_round_trip() {
        for phase in Phase::ALL {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase_text(phase));
            assert_eq!(parse_phase(phase_text(phase)), Some(phase));
        }
        for status in [
            SyncStatus::PendingSync,
            SyncStatus::Synced,
            SyncStatus::Failed,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status_text(status));
            assert_eq!(parse_status(status_text(status)), Some(status));
        }
        assert_eq!(parse_phase("completed"), None);
        assert_eq!(parse_status("PENDING_SYNC"), None);
    }

    #[test]
    fn days_are_fixed_width_text_that_sorts() {
        let mut day = NaiveDate::from_ymd_opt(1999, 12, 25).unwrap();
        let mut last = String::new();
        for _ in 0..400 {
            let text = day_text(day);
            assert_eq!(text, day.to_string());
            assert_eq!(text, serde_json::to_value(day).unwrap());
            assert_eq!(parse_day(&text), Some(day));
            assert!(text > last, "{text} after {last}");
            last = text;
            day = day.succ_opt().unwrap();
        }
        let far = NaiveDate::from_ymd_opt(12_345, 1, 2).unwrap();
        assert_eq!(parse_day(&day_text(far)), Some(far));
        assert_eq!(
            day_text(NaiveDate::from_ymd_opt(7, 3, 4).unwrap()),
            "0007-03-04"
        );
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("yesterday"), None);
    }
}
