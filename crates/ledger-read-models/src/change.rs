//! The events the read models apply, decoded once per event of the log for every read model:
//! every event's place, time and trail ([`Entry`]), and for tenant streams the onboarding
//! event ([`Change`]), straight from the payload's JSON text.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledger_core::{Envelope, Position, RawEvent, Trail};
use ledger_domain::{SlugClaimed, TenantEvent};
use ledger_projector::{Decode, ReadModel, micros};

/// The stream category of tenants: `tenant-<id>`.
pub const TENANT_CATEGORY: &str = "tenant";

/// An onboarding event of one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The tenant: the id part of its `tenant-<id>` stream.
    pub tenant_id: String,
    /// The event's seq in the tenant's stream.
    pub seq: u64,
    /// The event, its times truncated to microseconds ([`normalize`]).
    pub event: TenantEvent,
}

/// Any event of the log: where and when it was recorded, who acted and in which request.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its place in the log.
    pub position: Position,
    /// Its stream.
    pub stream: String,
    /// Its place in the stream.
    pub seq: u64,
    /// Its type.
    pub event_type: String,
    /// When it was recorded, to the microsecond.
    pub recorded_at: DateTime<Utc>,
    /// The tenant it belongs to: the id of a `tenant-<id>` stream, or the tenant a slug claim
    /// names.
    pub tenant: Option<String>,
    /// The metadata as JSON text, read only by the read models that need who acted
    /// ([`Entry::trail`]), so the others pay nothing for it.
    pub metadata: String,
}

impl Entry {
    /// Who acted and in which request, read from the metadata.
    pub fn trail(&self) -> Trail {
        Trail::of_text(&self.metadata)
    }
}

/// An event of the log as the read models get it: its entry, and the onboarding event when it
/// is one.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    /// Every event's place, time and trail.
    pub entry: Entry,
    /// The onboarding event of a tenant stream.
    pub change: Option<Change>,
}

/// Decodes the events of the log for the read models: every event becomes a [`Logged`], and
/// events of `tenant-*` streams carry their [`Change`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Decoder;

impl Decode<Logged> for Decoder {
    fn decode(&self, raw: RawEvent) -> Option<Logged> {
        let tenant = match tenant_id_start(&raw.stream) {
            Some(start) => Some(raw.stream[start..].to_string()),
            None if raw.event_type == SlugClaimed::TYPE => {
                serde_json::from_str::<SlugClaimed>(&raw.data)
                    .ok()
                    .map(|c| c.tenant_id)
            }
            None => None,
        };
        let mut raw = raw;
        let entry = Entry {
            position: raw.position,
            stream: raw.stream.clone(),
            seq: raw.seq.0,
            event_type: raw.event_type.clone(),
            recorded_at: micros(raw.recorded_at),
            tenant,
            metadata: std::mem::take(&mut raw.metadata),
        };
        let change = Change::from_raw(raw);
        Some(Logged { entry, change })
    }
}

/// A read model of onboarding events, run on the log's [`Logged`] events: it gets the
/// [`Change`] of each that carries one.
#[derive(Clone)]
pub struct OnChanges(pub Arc<dyn ReadModel<Change>>);

impl ReadModel<Logged> for OnChanges {
    fn schema(&self) -> &'static ledger_projector::Schema {
        self.0.schema()
    }

    fn categories(&self) -> &'static [&'static str] {
        self.0.categories()
    }

    fn keys(&self, logged: &Logged, keys: &mut ledger_projector::Keys) {
        if let Some(change) = &logged.change {
            self.0.keys(change, keys);
        }
    }

    fn apply(
        &self,
        logged: &Logged,
        rows: &mut ledger_projector::Rows,
    ) -> Result<(), ledger_projector::RowError> {
        match &logged.change {
            Some(change) => self.0.apply(change, rows),
            None => Ok(()),
        }
    }
}

/// Where the tenant id starts in `stream` when it is a tenant stream.
fn tenant_id_start(stream: &str) -> Option<usize> {
    let id = stream
        .strip_prefix(TENANT_CATEGORY)?
        .strip_prefix('-')
        .filter(|id| !id.is_empty())?;
    Some(stream.len() - id.len())
}

impl Change {
    /// Decodes an event of the log from its stored parts, its payload still JSON text, which is
    /// parsed straight into the event's variant (no intermediate JSON value); the stream's name
    /// becomes the tenant id in place. `None` for an event of another category, and (with a
    /// warning) for an event of a tenant stream that is not an onboarding event.
    pub fn from_raw(raw: RawEvent) -> Option<Change> {
        let RawEvent {
            stream,
            seq,
            event_type,
            data,
            ..
        } = raw;
        let start = tenant_id_start(&stream)?;
        match decode_text(&event_type, &data) {
            Ok(event) => {
                let mut tenant_id = stream;
                tenant_id.drain(..start);
                Some(Change {
                    tenant_id,
                    seq: seq.0,
                    event: normalize(event),
                })
            }
            Err(error) => {
                skipped(&stream, seq.0, &event_type, &error);
                None
            }
        }
    }

    /// Decodes a stored envelope the same way (its payload is taken, not copied).
    pub fn from_envelope(envelope: Envelope) -> Option<Change> {
        let Envelope {
            stream,
            seq,
            event_type,
            data,
            ..
        } = envelope;
        if stream.category() != TENANT_CATEGORY {
            return None;
        }
        match decode(&event_type, data) {
            Ok(event) => Some(Change {
                tenant_id: stream.id().to_string(),
                seq: seq.0,
                event: normalize(event),
            }),
            Err(error) => {
                skipped(stream.as_str(), seq.0, &event_type, &error);
                None
            }
        }
    }
}

fn skipped(stream: &str, seq: u64, event_type: &str, error: &serde_json::Error) {
    tracing::warn!(
        stream,
        seq,
        event_type,
        error = %error,
        "the read models skip an event of a tenant stream that is not an onboarding event"
    );
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
        TenantErased { at } => TenantErased { at: micros(at) },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use ledger_core::{Position, Seq, StreamName};
    use serde_json::{Value, json};

    use super::*;
    use crate::bench::bench_tenant;
    use crate::testing::{history, random_steps};

    fn raw(stream: &str, seq: u64, ty: &str, data: &str) -> RawEvent {
        RawEvent {
            position: Position(seq),
            stream: stream.into(),
            seq: Seq(seq),
            event_type: ty.into(),
            data: data.into(),
            metadata: "{}".into(),
            recorded_at: Utc::now(),
        }
    }

    fn envelope(stream: &str, seq: u64, ty: &str, data: Value) -> Envelope {
        Envelope {
            event_id: ledger_core::NewEvent::new("x", json!({})).event_id,
            stream: StreamName::parse(stream).unwrap(),
            seq: Seq(seq),
            position: Position(seq),
            event_type: ty.into(),
            data,
            metadata: json!({}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn decodes_tenant_events_and_skips_the_rest() {
        let at = "2026-01-20T09:00:00.123456789Z";
        let data = json!({ "at": at }).to_string();
        let change = Change::from_raw(raw("tenant-abc", 3, "OrganizationCreated", &data)).unwrap();
        let want = Utc.timestamp_opt(1_768_899_600, 123_456_000).unwrap();
        assert_eq!(
            change,
            Change {
                tenant_id: "abc".into(),
                seq: 3,
                event: TenantEvent::OrganizationCreated { at: want },
            }
        );
        let from_envelope = Change::from_envelope(envelope(
            "tenant-abc",
            3,
            "OrganizationCreated",
            json!({ "at": at }),
        ));
        assert_eq!(from_envelope, Some(change));
        let erased = Change::from_raw(raw("tenant-abc", 4, "TenantErased", &data)).unwrap();
        assert_eq!(erased.event, TenantEvent::TenantErased { at: want });
        let claim = json!({ "tenant_id": "abc" }).to_string();
        for other in [
            raw("slug-abc", 1, "SlugClaimed", &claim),
            raw("tenants-abc", 1, "OrganizationCreated", &data),
            raw("tenant", 1, "OrganizationCreated", &data),
            raw("tenant-", 1, "OrganizationCreated", &data),
            raw("tenant-abc", 4, "Nope", "{}"),
        ] {
            assert_eq!(Change::from_raw(other.clone()), None, "{other:?}");
        }
        let slug = envelope("slug-abc", 1, "SlugClaimed", json!({ "tenant_id": "abc" }));
        assert_eq!(Change::from_envelope(slug), None);
        let bad = envelope("tenant-abc", 4, "Nope", json!({}));
        assert_eq!(Change::from_envelope(bad), None);
        let dashed = Change::from_raw(raw("tenant-a-b", 1, "OrganizationCreated", &data)).unwrap();
        assert_eq!(dashed.tenant_id, "a-b");
    }

    #[test]
    fn decoding_the_payload_text_equals_the_domain_decoding() {
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
            let got = Change::from_raw(raw("tenant-t", 1, &e.event_type, &text));
            let want = TenantEvent::from_parts(&e.event_type, &e.data)
                .ok()
                .map(normalize);
            assert_eq!(got.map(|c| c.event), want, "{} {text}", e.event_type);
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
            assert_eq!(
                Change::from_raw(raw("tenant-t", 1, ty, text)),
                None,
                "{ty} {text}"
            );
        }
    }

    #[test]
    fn normalize_truncates_every_time_to_microseconds() {
        let at = Utc.timestamp_opt(1_768_899_600, 123_456_789).unwrap();
        let exact = Utc.timestamp_opt(1_768_899_600, 123_456_000).unwrap();
        let event = TenantEvent::ApiKeyIssued {
            fingerprint: "fp".into(),
            reveal_expires_at: at,
            at,
        };
        assert_eq!(
            normalize(event),
            TenantEvent::ApiKeyIssued {
                fingerprint: "fp".into(),
                reveal_expires_at: exact,
                at: exact,
            }
        );
        let lock = TenantEvent::OnboardingLockAcquired {
            holder: "h".into(),
            at,
            expires_at: at,
        };
        let TenantEvent::OnboardingLockAcquired {
            at: a, expires_at, ..
        } = normalize(lock)
        else {
            unreachable!()
        };
        assert_eq!((a, expires_at), (exact, exact));
        assert_eq!(
            normalize(TenantEvent::TenantErased { at }),
            TenantEvent::TenantErased { at: exact }
        );
    }
}
