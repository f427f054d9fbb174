//! The onboarding event catalog.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Phase, Stage};

/// An event of a `tenant-<id>` stream. Every event carries the time it was decided (`at`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", deny_unknown_fields)]
pub enum TenantEvent {
    /// The tenant exists, with its slug and display name.
    TenantRegistered {
        /// The unique slug (also claimed in `slug-<slug>`).
        slug: String,
        /// Display name.
        name: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The checkout was paid.
    PaymentVerified {
        /// The payment provider's checkout session.
        checkout_session_id: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A holder (a tab, a job) took or renewed the onboarding lock.
    OnboardingLockAcquired {
        /// Who holds it.
        holder: String,
        /// When it was taken.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
        /// When it lapses unless renewed.
        #[serde(deserialize_with = "crate::time::deserialize")]
        expires_at: DateTime<Utc>,
    },
    /// The holder gave the lock up.
    OnboardingLockReleased {
        /// Who held it.
        holder: String,
        /// Why.
        reason: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The organisation was created.
    OrganizationCreated {
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The workspace was provisioned.
    WorkspaceProvisioned {
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// An API key was issued; only its fingerprint is recorded, never the key.
    ApiKeyIssued {
        /// Fingerprint of the key (e.g. a hash prefix).
        fingerprint: String,
        /// Until when the key may be shown to the user.
        #[serde(deserialize_with = "crate::time::deserialize")]
        reveal_expires_at: DateTime<Utc>,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A stage failed; the same step may be retried.
    OnboardingStepFailed {
        /// The stage that failed.
        stage: Stage,
        /// A machine-readable failure code.
        code: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A downstream sync failed and awaits compensation.
    BackendSyncFailed {
        /// The downstream system.
        target: String,
        /// How many attempts have failed so far.
        attempts: u32,
        /// The last error text.
        last_error: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A failed sync is being retried.
    BackendSyncRetried {
        /// The downstream system.
        target: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A downstream sync succeeded.
    BackendSynced {
        /// The downstream system.
        target: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A failed sync was given up on.
    BackendSyncAbandoned {
        /// The downstream system.
        target: String,
        /// Why.
        reason: String,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A phase reached outside the normal flow was recorded (e.g. by a migration script).
    OnboardingPhaseBackfilled {
        /// The phase the tenant is known to have reached.
        phase: Phase,
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Onboarding finished.
    OnboardingCompleted {
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Personal fields of this tenant were erased; its data key is destroyed.
    TenantErased {
        /// When.
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
}

/// The event of a `slug-<slug>` stream: the slug belongs to a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlugClaimed {
    /// The tenant that owns the slug.
    pub tenant_id: String,
}

impl SlugClaimed {
    /// The event type name.
    pub const TYPE: &'static str = "SlugClaimed";
}

/// A stored type/data pair that is not a valid onboarding event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {event_type} event: {reason}")]
pub struct DecodeError {
    /// The type that was given.
    pub event_type: String,
    /// What is wrong.
    pub reason: String,
}

impl TenantEvent {
    /// Every event type of the catalog.
    pub const TYPES: [&'static str; 15] = [
        "TenantRegistered",
        "PaymentVerified",
        "OnboardingLockAcquired",
        "OnboardingLockReleased",
        "OrganizationCreated",
        "WorkspaceProvisioned",
        "ApiKeyIssued",
        "OnboardingStepFailed",
        "BackendSyncFailed",
        "BackendSyncRetried",
        "BackendSynced",
        "BackendSyncAbandoned",
        "OnboardingPhaseBackfilled",
        "OnboardingCompleted",
        "TenantErased",
    ];

    /// Splits the event into its type name and JSON payload, as a store keeps them.
    pub fn to_parts(&self) -> (&'static str, Value) {
        let Value::Object(mut tagged) = serde_json::to_value(self).expect("events serialize")
        else {
            unreachable!("adjacently tagged enums serialize to objects")
        };
        let data = tagged.remove("data").unwrap_or(Value::Null);
        (self.event_type(), data)
    }

    /// Rebuilds an event from its stored type name and payload.
    pub fn from_parts(event_type: &str, data: &Value) -> Result<Self, DecodeError> {
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(|e| DecodeError {
            event_type: event_type.to_string(),
            reason: e.to_string(),
        })
    }

    /// The event's type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            TenantEvent::TenantRegistered { .. } => "TenantRegistered",
            TenantEvent::PaymentVerified { .. } => "PaymentVerified",
            TenantEvent::OnboardingLockAcquired { .. } => "OnboardingLockAcquired",
            TenantEvent::OnboardingLockReleased { .. } => "OnboardingLockReleased",
            TenantEvent::OrganizationCreated { .. } => "OrganizationCreated",
            TenantEvent::WorkspaceProvisioned { .. } => "WorkspaceProvisioned",
            TenantEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            TenantEvent::OnboardingStepFailed { .. } => "OnboardingStepFailed",
            TenantEvent::BackendSyncFailed { .. } => "BackendSyncFailed",
            TenantEvent::BackendSyncRetried { .. } => "BackendSyncRetried",
            TenantEvent::BackendSynced { .. } => "BackendSynced",
            TenantEvent::BackendSyncAbandoned { .. } => "BackendSyncAbandoned",
            TenantEvent::OnboardingPhaseBackfilled { .. } => "OnboardingPhaseBackfilled",
            TenantEvent::OnboardingCompleted { .. } => "OnboardingCompleted",
            TenantEvent::TenantErased { .. } => "TenantErased",
        }
    }

    /// When the event was decided.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            TenantEvent::TenantRegistered { at, .. }
            | TenantEvent::PaymentVerified { at, .. }
            | TenantEvent::OnboardingLockAcquired { at, .. }
            | TenantEvent::OnboardingLockReleased { at, .. }
            | TenantEvent::OrganizationCreated { at }
            | TenantEvent::WorkspaceProvisioned { at }
            | TenantEvent::ApiKeyIssued { at, .. }
            | TenantEvent::OnboardingStepFailed { at, .. }
            | TenantEvent::BackendSyncFailed { at, .. }
            | TenantEvent::BackendSyncRetried { at, .. }
            | TenantEvent::BackendSynced { at, .. }
            | TenantEvent::BackendSyncAbandoned { at, .. }
            | TenantEvent::OnboardingPhaseBackfilled { at, .. }
            | TenantEvent::OnboardingCompleted { at }
            | TenantEvent::TenantErased { at } => *at,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap()
    }

    #[test]
    fn parts_round_trip_for_every_type() {
        let at = t();
        let all = vec![
            TenantEvent::TenantRegistered {
                slug: "acme".into(),
                name: "Acme".into(),
                at,
            },
            TenantEvent::PaymentVerified {
                checkout_session_id: "cs_1".into(),
                at,
            },
            TenantEvent::OnboardingLockAcquired {
                holder: "tab-a".into(),
                at,
                expires_at: at,
            },
            TenantEvent::OnboardingLockReleased {
                holder: "tab-a".into(),
                reason: "done".into(),
                at,
            },
            TenantEvent::OrganizationCreated { at },
            TenantEvent::WorkspaceProvisioned { at },
            TenantEvent::ApiKeyIssued {
                fingerprint: "fp".into(),
                reveal_expires_at: at,
                at,
            },
            TenantEvent::OnboardingStepFailed {
                stage: Stage::SettingUpWorkspace,
                code: "x".into(),
                at,
            },
            TenantEvent::BackendSyncFailed {
                target: "crm".into(),
                attempts: 1,
                last_error: "e".into(),
                at,
            },
            TenantEvent::BackendSyncRetried {
                target: "crm".into(),
                at,
            },
            TenantEvent::BackendSynced {
                target: "crm".into(),
                at,
            },
            TenantEvent::BackendSyncAbandoned {
                target: "crm".into(),
                reason: "r".into(),
                at,
            },
            TenantEvent::OnboardingPhaseBackfilled {
                phase: Phase::Completed,
                at,
            },
            TenantEvent::OnboardingCompleted { at },
            TenantEvent::TenantErased { at },
        ];
        assert_eq!(all.len(), TenantEvent::TYPES.len());
        for (event, name) in all.iter().zip(TenantEvent::TYPES) {
            let (ty, data) = event.to_parts();
            assert_eq!(ty, name);
            assert!(data.is_object(), "{ty}");
            assert_eq!(&TenantEvent::from_parts(ty, &data).unwrap(), event);
            assert_eq!(event.at(), at);
        }
    }

    #[test]
    fn decoding_refuses_what_is_not_in_the_catalog() {
        let bad = [
            ("Nope", json!({})),
            ("PaymentVerified", json!({"at": "2026-01-20T09:00:00Z"})),
            (
                "PaymentVerified",
                json!({"checkout_session_id": 5, "at": "2026-01-20T09:00:00Z"}),
            ),
            (
                "OrganizationCreated",
                json!({"at": "2026-01-20T09:00:00Z", "extra": 1}),
            ),
            (
                "ApiKeyIssued",
                json!({"key": "sk_live", "at": "2026-01-20T09:00:00Z"}),
            ),
            ("TenantErased", json!({})),
            (
                "TenantErased",
                json!({"at": "2026-01-20T09:00:00Z", "name": "Acme"}),
            ),
        ];
        for (ty, data) in bad {
            assert!(TenantEvent::from_parts(ty, &data).is_err(), "{ty} {data}");
        }
    }

    #[test]
    fn api_key_event_has_no_key_field() {
        let at = t();
        let (_, data) = TenantEvent::ApiKeyIssued {
            fingerprint: "fp".into(),
            reveal_expires_at: at,
            at,
        }
        .to_parts();
        let keys: Vec<_> = data.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["at", "fingerprint", "reveal_expires_at"]);
    }
}
