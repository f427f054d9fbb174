//! The key table: one data key per subject (a tenant), the only mutable thing in a ledger's
//! database. Personal fields are sealed with their subject's key; destroying the key (erasure)
//! leaves ciphertext nobody can open, while the hash chains over that ciphertext still verify.
//!
//! A store keeps keys for opaque subjects: it knows neither tenants nor which fields are
//! personal.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BoxFuture, StoreError};

/// A 256-bit data key. Its `Debug` form never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(pub [u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// The key from its 32 stored bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        <[u8; 32]>::try_from(bytes).ok().map(DataKey)
    }
}

/// A subject's key as the table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// The key, usable to seal and open.
    Live(DataKey),
    /// The key was destroyed at this time: what it sealed reads as erased.
    Erased(DateTime<Utc>),
}

/// One row of the key table, as `ledger export --with-keys` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Whose key it is (a tenant id).
    pub subject: String,
    /// The key as 64 hex digits; absent once destroyed.
    #[serde(default, with = "hex_key", skip_serializing_if = "Option::is_none")]
    pub key: Option<DataKey>,
    /// When the key was made.
    pub created_at: DateTime<Utc>,
    /// When the key was destroyed, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<DateTime<Utc>>,
}

impl KeyRecord {
    /// The record's state: live with its key, or erased.
    pub fn state(&self) -> KeyState {
        match (&self.key, self.erased_at) {
            (Some(key), None) => KeyState::Live(key.clone()),
            (_, Some(at)) => KeyState::Erased(at),
            (None, None) => KeyState::Erased(self.created_at),
        }
    }
}

/// Exported rows as an import writes them, one per subject in subject order: a subject listed
/// twice is folded as if its records were imported one after the other (the first live key
/// stays, an erased record destroys it), and a record with neither key nor erasure time is
/// erased at its creation. Every backend's `import_keys` starts from this.
pub fn fold_key_records(records: Vec<KeyRecord>) -> Vec<KeyRecord> {
    let mut folded: std::collections::BTreeMap<String, KeyRecord> = Default::default();
    for r in records {
        let (key, erased_at) = match r.state() {
            KeyState::Live(key) => (Some(key), None),
            KeyState::Erased(at) => (None, Some(at)),
        };
        match folded.get_mut(&r.subject) {
            None => {
                let subject = r.subject.clone();
                let r = KeyRecord {
                    key,
                    erased_at,
                    ..r
                };
                folded.insert(subject, r);
            }
            Some(held) if held.key.is_some() && erased_at.is_some() => {
                held.key = None;
                held.erased_at = erased_at;
            }
            Some(_) => {}
        }
    }
    folded.into_values().collect()
}

/// The key table of a store.
pub trait KeyStore: Send + Sync {
    /// The subject's key, storing `fresh` as its key first when it has none. An erased subject
    /// stays erased: `fresh` is dropped and [`KeyState::Erased`] returned. Racing callers all
    /// get the one key that was stored.
    fn key_for_writing(
        &self,
        subject: &str,
        fresh: DataKey,
    ) -> BoxFuture<'_, Result<KeyState, StoreError>>;

    /// The keys of `subjects` as they stand; subjects the table does not hold are left out.
    fn keys<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, KeyState>, StoreError>>;

    /// Destroys the subject's key, leaving a tombstone so that no key is ever made for it
    /// again (also when it had none). The key's bytes are overwritten where the database
    /// allows it. True when a live key was destroyed, false when there was none.
    fn destroy_key<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Every row of the key table, ordered by subject.
    fn key_records(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>>;

    /// Loads exported rows into the key table; a subject it already holds keeps its row,
    /// except that an erased record destroys a live key. The number of rows written.
    fn import_keys(&self, records: Vec<KeyRecord>) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// Serde for an optional key as 64 lowercase hex digits.
mod hex_key {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::DataKey;
    use crate::ChainHash;

    pub fn serialize<S: Serializer>(key: &Option<DataKey>, s: S) -> Result<S::Ok, S::Error> {
        match key {
            Some(k) => s.collect_str(&ChainHash(k.0)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataKey>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            t.parse::<ChainHash>()
                .map(|h| DataKey(h.0))
                .map_err(|_| D::Error::custom("a data key is 64 lowercase hex digits"))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn rec(subject: &str, key: Option<u8>, erased: Option<i64>) -> KeyRecord {
        KeyRecord {
            subject: subject.into(),
            key: key.map(|b| DataKey([b; 32])),
            created_at: at(1),
            erased_at: erased.map(at),
        }
    }

    #[test]
    fn duplicates_fold_as_if_imported_in_turn() {
        let folded = fold_key_records(vec![
            rec("a", Some(1), None),
            rec("a", Some(2), None),
            rec("b", Some(3), None),
            rec("b", None, Some(5)),
            rec("b", None, Some(9)),
            rec("c", None, None),
        ]);
        assert_eq!(
            folded,
            vec![
                rec("a", Some(1), None),
                rec("b", None, Some(5)),
                rec("c", None, Some(1)),
            ]
        );
    }

    #[test]
    fn records_round_trip_and_never_print_keys() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let live = KeyRecord {
            subject: "t1".into(),
            key: Some(DataKey([7; 32])),
            created_at: at,
            erased_at: None,
        };
        let text = serde_json::to_string(&live).unwrap();
        assert!(text.contains(&"07".repeat(32)), "{text}");
        assert_eq!(serde_json::from_str::<KeyRecord>(&text).unwrap(), live);
        assert_eq!(live.state(), KeyState::Live(DataKey([7; 32])));
        assert!(!format!("{live:?}").contains("7, 7"));

        let erased = KeyRecord {
            key: None,
            erased_at: Some(at),
            ..live
        };
        let text = serde_json::to_string(&erased).unwrap();
        assert!(!text.contains("\"key\""), "{text}");
        assert_eq!(erased.state(), KeyState::Erased(at));
        assert!(
            serde_json::from_str::<KeyRecord>(
                r#"{"subject":"x","key":"zz","created_at":"2024-01-01T00:00:00Z"}"#
            )
            .is_err()
        );
    }
}
