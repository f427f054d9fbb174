//! Idempotency keys: deterministic event ids and recognising a retried request.

use serde_json::{Map, Value};
use uuid::Uuid;

/// Namespace of event ids derived from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_4964_656d_706f_7465_6e74);

/// Metadata key holding the request fingerprint of an idempotent request.
pub(crate) const FINGERPRINT_KEY: &str = "idempotency_fingerprint";
/// Metadata key holding the idempotency key itself.
pub(crate) const KEY_KEY: &str = "idempotency_key";

/// A caller's idempotency key plus a fingerprint of the request it was sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// The key as the caller sent it.
    pub key: String,
    /// A digest of the request (e.g. of the command name and body); a retry must match it.
    pub fingerprint: String,
}

impl Idempotency {
    /// The id of the `index`-th event appended for this key on `stream`: the same on every retry.
    pub fn event_id(&self, stream: &str, index: usize) -> Uuid {
        Uuid::new_v5(
            &NAMESPACE,
            format!("{stream}\n{}\n{index}", self.key).as_bytes(),
        )
    }

    /// Records the key and fingerprint in an event's metadata.
    pub(crate) fn stamp(&self, metadata: &mut Map<String, Value>) {
        metadata.insert(KEY_KEY.into(), Value::String(self.key.clone()));
        metadata.insert(
            FINGERPRINT_KEY.into(),
            Value::String(self.fingerprint.clone()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = Idempotency {
            key: "k1".into(),
            fingerprint: "f".into(),
        };
        let b = Idempotency {
            key: "k2".into(),
            fingerprint: "f".into(),
        };
        assert_eq!(a.event_id("tenant-1", 0), a.event_id("tenant-1", 0));
        assert_ne!(a.event_id("tenant-1", 0), a.event_id("tenant-1", 1));
        assert_ne!(a.event_id("tenant-1", 0), a.event_id("tenant-2", 0));
        assert_ne!(a.event_id("tenant-1", 0), b.event_id("tenant-1", 0));
    }
}
