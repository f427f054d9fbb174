//! Events of the log decoded once for every projection, and batches of them.

use ledger_core::{Envelope, Position};
use ledger_domain::TenantEvent;
use serde_json::{Map, Value};

use crate::rows::micros;

/// The stream category of tenants: `tenant-<id>`.
pub const TENANT_CATEGORY: &str = "tenant";

/// One event of the global log as the projections see it: its position, and the onboarding
/// event when it is one (other streams and unreadable events only move the checkpoint).
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// Its place in the log.
    pub position: Position,
    /// The onboarding event, when the event is one.
    pub change: Option<Change>,
}

/// An onboarding event of one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The tenant: the id part of the `tenant-<id>` stream.
    pub tenant_id: String,
    /// The event's seq in the tenant's stream.
    pub seq: u64,
    /// The event, its times truncated to microseconds ([`normalize`]).
    pub event: TenantEvent,
}

impl Decoded {
    /// Decodes an envelope (taking its payload, so nothing is copied).
    pub fn from_envelope(envelope: Envelope) -> Decoded {
        let position = envelope.position;
        if envelope.stream.category() != TENANT_CATEGORY {
            return Decoded {
                position,
                change: None,
            };
        }
        let tenant_id = envelope.stream.id().to_string();
        let seq = envelope.seq.0;
        let mut tagged = Map::with_capacity(2);
        tagged.insert("type".into(), Value::String(envelope.event_type));
        tagged.insert("data".into(), envelope.data);
        let change = match serde_json::from_value::<TenantEvent>(Value::Object(tagged)) {
            Ok(event) => Some(Change {
                tenant_id,
                seq,
                event: normalize(event),
            }),
            Err(e) => {
                tracing::warn!(
                    stream = %envelope.stream,
                    seq,
                    error = %e,
                    "the projections skip an event of a tenant stream that is not an onboarding event"
                );
                None
            }
        };
        Decoded { position, change }
    }
}

/// The event with every time truncated to microseconds, the precision the tables keep, so that
/// applying it gives the same rows whether the previous state came from memory or a table.
pub fn normalize(event: TenantEvent) -> TenantEvent {
    use TenantEvent::*;
    match event {
        TenantRegistered { slug, name, at } => TenantRegistered {
            slug,
            name,
            at: micros(at),
        },
        PaymentVerified {
            checkout_session_id,
            at,
        } => PaymentVerified {
            checkout_session_id,
            at: micros(at),
        },
        OnboardingLockAcquired {
            holder,
            at,
            expires_at,
        } => OnboardingLockAcquired {
            holder,
            at: micros(at),
            expires_at: micros(expires_at),
        },
        OnboardingLockReleased { holder, reason, at } => OnboardingLockReleased {
            holder,
            reason,
            at: micros(at),
        },
        OrganizationCreated { at } => OrganizationCreated { at: micros(at) },
        WorkspaceProvisioned { at } => WorkspaceProvisioned { at: micros(at) },
        ApiKeyIssued {
            fingerprint,
            reveal_expires_at,
            at,
        } => ApiKeyIssued {
            fingerprint,
            reveal_expires_at: micros(reveal_expires_at),
            at: micros(at),
        },
        OnboardingStepFailed { stage, code, at } => OnboardingStepFailed {
            stage,
            code,
            at: micros(at),
        },
        BackendSyncFailed {
            target,
            attempts,
            last_error,
            at,
        } => BackendSyncFailed {
            target,
            attempts,
            last_error,
            at: micros(at),
        },
        BackendSyncRetried { target, at } => BackendSyncRetried {
            target,
            at: micros(at),
        },
        BackendSynced { target, at } => BackendSynced {
            target,
            at: micros(at),
        },
        BackendSyncAbandoned { target, reason, at } => BackendSyncAbandoned {
            target,
            reason,
            at: micros(at),
        },
        OnboardingPhaseBackfilled { phase, at } => OnboardingPhaseBackfilled {
            phase,
            at: micros(at),
        },
        OnboardingCompleted { at } => OnboardingCompleted { at: micros(at) },
    }
}

/// Consecutive events of the log, applied in one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    changes: Vec<Change>,
    events: u64,
    last: Option<Position>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next event of the log.
    pub fn push(&mut self, decoded: Decoded) {
        self.events += 1;
        self.last = Some(decoded.position);
        if let Some(change) = decoded.change {
            self.changes.push(change);
        }
    }

    /// How many events of the log the batch covers (onboarding events or not).
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether the batch covers no event.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The position of its last event: the checkpoint once it is applied.
    pub fn last(&self) -> Option<Position> {
        self.last
    }

    /// Its onboarding events, in log order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The tenants whose rows of `kind` the batch may change, sorted and without repeats:
    /// the rows a backend loads before folding the batch.
    pub fn tenant_ids(&self, kind: crate::Kind) -> Vec<String> {
        let mut ids: Vec<&str> = self
            .changes
            .iter()
            .filter(|c| crate::apply::key_of(kind, c).is_some())
            .map(|c| c.tenant_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(str::to_string).collect()
    }
}

impl FromIterator<Decoded> for Batch {
    fn from_iter<I: IntoIterator<Item = Decoded>>(iter: I) -> Self {
        let mut batch = Batch::new();
        for d in iter {
            batch.push(d);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use ledger_core::{Seq, StreamName};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn envelope(stream: &str, seq: u64, position: u64, ty: &str, data: Value) -> Envelope {
        Envelope {
            event_id: Uuid::now_v7(),
            stream: StreamName::parse(stream).unwrap(),
            seq: Seq(seq),
            position: Position(position),
            event_type: ty.into(),
            data,
            metadata: json!({}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn decodes_tenant_events_and_skips_the_rest() {
        let at = "2026-01-20T09:00:00.123456789Z";
        let ok = Decoded::from_envelope(envelope(
            "tenant-abc",
            3,
            10,
            "OrganizationCreated",
            json!({ "at": at }),
        ));
        let change = ok.change.clone().unwrap();
        assert_eq!((change.tenant_id.as_str(), change.seq), ("abc", 3));
        let want = Utc.timestamp_opt(1_768_899_600, 123_456_000).unwrap();
        assert_eq!(change.event, TenantEvent::OrganizationCreated { at: want });
        let other = Decoded::from_envelope(envelope("slug-abc", 1, 11, "SlugClaimed", json!({})));
        assert_eq!(other.change, None);
        let bad = Decoded::from_envelope(envelope("tenant-abc", 4, 12, "Nope", json!({})));
        assert_eq!(bad.change, None);
        let batch: Batch = [ok.clone(), other, bad].into_iter().collect();
        assert_eq!((batch.len(), batch.last()), (3, Some(Position(12))));
        assert_eq!(batch.changes().len(), 1);
        assert_eq!(batch.tenant_ids(crate::Kind::TenantPhase), ["abc"]);
        assert!(batch.tenant_ids(crate::Kind::OnboardingLocks).is_empty());
    }
}
