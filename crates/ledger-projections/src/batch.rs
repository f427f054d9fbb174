//! Events of the log decoded once for every projection, and batches of them.

use std::hash::BuildHasher;

use foldhash::HashSet;
use foldhash::fast::FixedState;

use ledger_core::{Envelope, Position};
use ledger_domain::TenantEvent;

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
    /// Decodes an event from its stored parts: `data` is the payload's JSON text, which only
    /// a `tenant-*` event needs (other streams may pass `None`). Parses the payload straight
    /// into its variant, with no intermediate JSON value.
    pub fn from_parts(
        position: Position,
        stream: &str,
        seq: u64,
        event_type: &str,
        data: Option<&str>,
    ) -> Decoded {
        let tenant = stream
            .strip_prefix(TENANT_CATEGORY)
            .and_then(|rest| rest.strip_prefix('-'));
        let (Some(tenant_id), Some(data)) = (tenant, data) else {
            return Decoded {
                position,
                change: None,
            };
        };
        let change = match decode_text(event_type, data) {
            Ok(event) => Some(Change {
                tenant_id: tenant_id.to_string(),
                seq,
                event: normalize(event),
            }),
            Err(e) => {
                tracing::warn!(
                    stream,
                    seq,
                    error = %e,
                    "the projections skip an event of a tenant stream that is not an onboarding event"
                );
                None
            }
        };
        Decoded { position, change }
    }

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
        let change = match decode(&envelope.event_type, envelope.data) {
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

/// [`decode`] of a payload still in its JSON text, which must hold nothing after the value.
fn decode_text(event_type: &str, data: &str) -> Result<TenantEvent, serde_json::Error> {
    let mut json = serde_json::Deserializer::from_str(data);
    let event = decode(event_type, &mut json)?;
    json.end()?;
    Ok(event)
}

/// Decodes a stored type and payload (a JSON value, or a deserializer of its text) into an
/// onboarding event, as `TenantEvent::from_parts` does but faster: the parts are presented to
/// the event's adjacently tagged form as the map `{"type": .., "data": ..}`, type first, so the
/// payload deserializes straight into its variant.
fn decode<'de, D>(event_type: &'de str, data: D) -> Result<TenantEvent, serde_json::Error>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    use serde::Deserialize;
    TenantEvent::deserialize(serde::de::value::MapAccessDeserializer::new(Parts {
        event_type: Some(event_type),
        data: Some(data),
    }))
}

/// The stored parts of an event seen as the map `{"type": .., "data": ..}`, type first.
struct Parts<'de, D> {
    event_type: Option<&'de str>,
    data: Option<D>,
}

impl<'de, D> serde::de::MapAccess<'de> for Parts<'de, D>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        use serde::de::value::BorrowedStrDeserializer;
        let key = match (&self.event_type, &self.data) {
            (Some(_), _) => "type",
            (None, Some(_)) => "data",
            (None, None) => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::Error;
        use serde::de::value::BorrowedStrDeserializer;
        if let Some(event_type) = self.event_type.take() {
            return seed.deserialize(BorrowedStrDeserializer::new(event_type));
        }
        match self.data.take() {
            Some(data) => seed.deserialize(data),
            None => Err(serde_json::Error::custom(
                "no value left in an event's parts",
            )),
        }
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
    /// Tenants known to have no row yet in the copies this batch goes to (see
    /// [`Batch::mark_new`]): their rows need no loading.
    new_tenants: HashSet<String>,
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

    /// The tenants whose rows of `kind` the batch may change and which may have rows already,
    /// sorted and without repeats: the rows a backend loads before folding the batch.
    pub fn tenant_ids(&self, kind: crate::Kind) -> Vec<String> {
        let mut ids: Vec<&str> = self
            .changes
            .iter()
            .filter(|c| crate::apply::concerns(kind, &c.event))
            .map(|c| c.tenant_id.as_str())
            .filter(|t| !self.is_new(t))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(str::to_string).collect()
    }

    /// Whether `tenant_id` is known to have no rows yet in the copies this batch goes to
    /// (see [`Batch::mark_new`]): its rows can be inserted without looking for existing ones.
    pub fn is_new(&self, tenant_id: &str) -> bool {
        self.new_tenants.contains(tenant_id)
    }

    /// Records which tenants of the batch certainly have no rows yet, given `seen`: hashes of
    /// every tenant applied to the (initially empty) copies so far; adds the batch's tenants
    /// to it. A replay from an empty table then loads only the rows it may have written,
    /// instead of every tenant's. (A hash collision only costs a needless load.)
    pub fn mark_new(&mut self, seen: &mut HashSet<u64>) {
        // A fixed seed: the hashes must agree across the batches of one pass.
        let hasher = FixedState::default();
        for c in &self.changes {
            if seen.insert(hasher.hash_one(c.tenant_id.as_str())) {
                self.new_tenants.insert(c.tenant_id.clone());
            }
        }
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
    use serde_json::{Value, json};
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
        let parts = Decoded::from_parts(
            Position(10),
            "tenant-abc",
            3,
            "OrganizationCreated",
            Some(&json!({ "at": at }).to_string()),
        );
        assert_eq!(parts, ok);
        let bad_parts = Decoded::from_parts(Position(12), "tenant-abc", 4, "Nope", Some("{}"));
        assert_eq!(bad_parts.change, None);
        let no_data = Decoded::from_parts(Position(11), "slug-abc", 1, "SlugClaimed", None);
        assert_eq!(no_data.change, None);
        let batch: Batch = [ok.clone(), other, bad].into_iter().collect();
        assert_eq!((batch.len(), batch.last()), (3, Some(Position(12))));
        assert_eq!(batch.changes().len(), 1);
        assert_eq!(batch.tenant_ids(crate::Kind::TenantPhase), ["abc"]);
        assert!(batch.tenant_ids(crate::Kind::OnboardingLocks).is_empty());
    }

    #[test]
    fn decoding_the_payload_text_equals_the_domain_decoding() {
        use crate::generate::{bench_tenant, history, random_steps};
        let start = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        let mut events: Vec<_> = history(3, 40, &random_steps(11, 40, 2000), start)
            .into_iter()
            .flat_map(|a| a.events)
            .collect();
        events.extend(bench_tenant(start, 7));
        assert!(events.len() > 300, "{} events", events.len());
        for e in events {
            let text = e.data.to_string();
            let got = Decoded::from_parts(Position(1), "tenant-t", 1, &e.event_type, Some(&text));
            let want = TenantEvent::from_parts(&e.event_type, &e.data)
                .ok()
                .map(normalize);
            assert_eq!(got.change.map(|c| c.event), want, "{} {text}", e.event_type);
        }
        // A payload that is not the event's, or not JSON, or followed by more text.
        for (ty, text) in [
            (
                "OrganizationCreated",
                r#"{"at":"2026-01-20T09:00:00Z","x":1}"#,
            ),
            ("OrganizationCreated", r#"{"at":"2026-01-20T09:00:00Z"} {}"#),
            ("OrganizationCreated", "{"),
            ("TenantRegistered", r#"{"at":"2026-01-20T09:00:00Z"}"#),
        ] {
            let got = Decoded::from_parts(Position(1), "tenant-t", 1, ty, Some(text));
            assert_eq!(got.change, None, "{ty} {text}");
        }
    }
}
