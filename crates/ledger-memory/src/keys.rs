//! The key table of the in-memory store: one data key per opaque subject, with the semantics
//! of the database backends' `ledger_keys` table (a destroyed key leaves a tombstone).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ledger_core::chain::recorded_now;
use ledger_core::{BoxFuture, DataKey, KeyRecord, KeyState, KeyStore, StoreError};

use crate::store::MemoryStore;

/// The rows of the key table by subject, each either live (a key, no `erased_at`) or erased
/// (no key, an `erased_at`).
#[derive(Default)]
pub(crate) struct Keys(Mutex<BTreeMap<String, KeyRecord>>);

impl Keys {
    /// Runs `f` on the rows under their lock.
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, KeyRecord>) -> T) -> T {
        f(&mut self.0.lock().expect("memory key table lock poisoned"))
    }
}

/// Destroys the live key of `row` at `at`; true when it had one (an erased row keeps its
/// `erased_at`).
fn destroy(row: &mut KeyRecord, at: chrono::DateTime<chrono::Utc>) -> bool {
    if row.key.is_none() {
        return false;
    }
    row.key = None;
    row.erased_at = Some(at);
    true
}

impl KeyStore for MemoryStore {
    fn key_for_writing(
        &self,
        subject: &str,
        fresh: DataKey,
    ) -> BoxFuture<'_, Result<KeyState, StoreError>> {
        let state = self.shared.keys.with(|rows| {
            rows.entry(subject.to_string())
                .or_insert_with(|| KeyRecord {
                    subject: subject.to_string(),
                    key: Some(fresh),
                    created_at: recorded_now(),
                    erased_at: None,
                })
                .state()
        });
        Box::pin(async move { Ok(state) })
    }

    fn keys<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, KeyState>, StoreError>> {
        let found = self.shared.keys.with(|rows| {
            subjects
                .iter()
                .filter_map(|s| rows.get(s).map(|r| (s.clone(), r.state())))
                .collect()
        });
        Box::pin(async move { Ok(found) })
    }

    /// Inserts a tombstone (created and erased now) when the subject has no row, otherwise
    /// drops a live key and sets `erased_at` to now; an erased row keeps its `erased_at`.
    fn destroy_key<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = recorded_now();
        let destroyed = self.shared.keys.with(|rows| match rows.get_mut(subject) {
            Some(row) => destroy(row, now),
            None => {
                let tombstone = KeyRecord {
                    subject: subject.to_string(),
                    key: None,
                    created_at: now,
                    erased_at: Some(now),
                };
                rows.insert(subject.to_string(), tombstone);
                false
            }
        });
        Box::pin(async move { Ok(destroyed) })
    }

    fn key_records(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        let records = self
            .shared
            .keys
            .with(|rows| rows.values().cloned().collect());
        Box::pin(async move { Ok(records) })
    }

    /// Under one lock, so all or nothing is seen. A subject listed twice counts once: its
    /// records are applied one after the other. An erased record without `erased_at` is
    /// erased at its `created_at`.
    fn import_keys(&self, records: Vec<KeyRecord>) -> BoxFuture<'_, Result<u64, StoreError>> {
        let written = self.shared.keys.with(|rows| {
            let mut written = std::collections::BTreeSet::new();
            for r in records {
                let (key, erased_at) = match r.state() {
                    KeyState::Live(key) => (Some(key), None),
                    KeyState::Erased(at) => (None, Some(at)),
                };
                match (rows.get_mut(&r.subject), erased_at) {
                    (Some(row), Some(at)) => {
                        if destroy(row, at) {
                            written.insert(r.subject);
                        }
                    }
                    (Some(_), None) => {}
                    (None, _) => {
                        let subject = r.subject.clone();
                        let row = KeyRecord {
                            key,
                            erased_at,
                            ..r
                        };
                        rows.insert(subject.clone(), row);
                        written.insert(subject);
                    }
                }
            }
            written.len() as u64
        });
        Box::pin(async move { Ok(written) })
    }
}
