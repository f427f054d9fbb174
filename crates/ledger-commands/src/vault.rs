//! The vault: seals the personal fields of events on their way into the store with their
//! tenant's data key, and opens them on the way out, reading `[erased]` once the key is gone.
//!
//! Which fields are personal and whose key seals them is the catalog's
//! (`ledger_domain::personal`); the keys are the store's ([`KeyStore`]). Read paths fetch the
//! keys they need for every answer, so an erasure shows at once in every process sharing the
//! database. Appends use this process's copy of a tenant's key once they have it: a tenant erased by
//! another process has `TenantErased` in its stream, which refuses every command.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use ledger_core::{DataKey, Envelope, KeyState, KeyStore, NewEvent, StoreError, StreamName};
use ledger_domain::personal::{FieldPath, personal_fields, subject_of};
use serde_json::Value;

use crate::seal::{self, ERASED, Sealer};

/// Keys this process keeps for the command path before it starts over.
const CACHED_KEYS: usize = 65_536;

/// An append refused by the vault.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The tenant's key was destroyed: nothing personal can be written for it any more.
    #[error("tenant {tenant} was erased; its personal fields can no longer be written")]
    Erased {
        /// The tenant.
        tenant: String,
        /// When its key was destroyed.
        erased_at: DateTime<Utc>,
    },
    /// The key table could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Seals and opens personal fields with the tenants' keys; cheap to clone.
#[derive(Clone)]
pub struct Vault {
    keys: Arc<dyn KeyStore>,
    cache: Arc<Mutex<HashMap<String, Arc<Sealer>>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault")
    }
}

impl Vault {
    /// A vault over a store's key table.
    pub fn new(keys: Arc<dyn KeyStore>) -> Self {
        Self {
            keys,
            cache: Arc::default(),
        }
    }

    /// The key table.
    pub fn keys(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// Seals the personal fields of `events`, about to be appended to `stream`, making the
    /// tenant's key when it has none. Events without personal fields or without a tenant are
    /// left as they are and cost nothing.
    pub async fn seal(
        &self,
        stream: &StreamName,
        events: &mut [NewEvent],
    ) -> Result<(), SealError> {
        for event in events.iter_mut() {
            let Some(subject) = subject_of(stream.as_str(), &event.event_type, &event.data) else {
                continue;
            };
            let fields: Vec<FieldPath> = personal_fields(&event.event_type)
                .filter(|f| {
                    f.get_mut(&mut event.data, &mut event.metadata)
                        .is_some_and(|v| !v.is_null())
                })
                .collect();
            if fields.is_empty() {
                continue;
            }
            let key = self.writing_key(&subject).await?;
            for field in fields {
                if let Some(value) = field.get_mut(&mut event.data, &mut event.metadata) {
                    *value = Value::String(key.seal(&field.label(), value));
                }
            }
        }
        Ok(())
    }

    /// The key that seals `subject`'s new fields: this process's copy, else the table's,
    /// made on first use.
    async fn writing_key(&self, subject: &str) -> Result<Arc<Sealer>, SealError> {
        if let Some(key) = self.cache.lock().expect("key cache").get(subject) {
            return Ok(key.clone());
        }
        let held = self
            .keys
            .keys(&[subject.to_string()])
            .await?
            .remove(subject);
        let state = match held {
            Some(state) => state,
            None => {
                self.keys
                    .key_for_writing(subject, seal::fresh_key())
                    .await?
            }
        };
        match state {
            KeyState::Live(key) => {
                let sealer = Arc::new(Sealer::new(&key));
                let mut cache = self.cache.lock().expect("key cache");
                if cache.len() >= CACHED_KEYS {
                    cache.clear();
                }
                cache.insert(subject.to_string(), sealer.clone());
                Ok(sealer)
            }
            KeyState::Erased(erased_at) => Err(SealError::Erased {
                tenant: subject.to_string(),
                erased_at,
            }),
        }
    }

    /// An opener holding the current keys of `subjects`, read from the table now.
    pub async fn opener<I>(&self, subjects: I) -> Result<Opener, StoreError>
    where
        I: IntoIterator<Item = String>,
    {
        let wanted: HashSet<String> = subjects.into_iter().collect();
        if wanted.is_empty() {
            return Ok(Opener::default());
        }
        let wanted: Vec<String> = wanted.into_iter().collect();
        let keys = self.keys.keys(&wanted).await?;
        Ok(Opener::of(keys))
    }

    /// Opens the personal fields of `events` with the keys as they are now.
    pub async fn open_envelopes(&self, events: &mut [Envelope]) -> Result<(), StoreError> {
        let opener = self.opener(events.iter().filter_map(subject)).await?;
        for event in events {
            opener.open_envelope(event);
        }
        Ok(())
    }

    /// What `value` looks like when sealed into the metadata path `field` of the events of
    /// `subjects` (every subject with a live key when `None`): the texts an index of sealed
    /// values holds for it. Sealing is deterministic, so this finds a person in the audit
    /// trail without opening a row.
    pub async fn sealed_forms(
        &self,
        field: FieldPath,
        value: &str,
        subjects: Option<Vec<String>>,
    ) -> Result<Vec<String>, StoreError> {
        let keys: Vec<DataKey> = match subjects {
            Some(subjects) => self
                .keys
                .keys(&subjects)
                .await?
                .into_values()
                .filter_map(|state| match state {
                    KeyState::Live(key) => Some(key),
                    KeyState::Erased(_) => None,
                })
                .collect(),
            None => self
                .keys
                .key_records()
                .await?
                .into_iter()
                .filter_map(|record| match record.state() {
                    KeyState::Live(key) => Some(key),
                    KeyState::Erased(_) => None,
                })
                .collect(),
        };
        let label = field.label();
        let value = Value::from(value);
        Ok(keys
            .iter()
            .map(|key| Sealer::new(key).seal(&label, &value))
            .collect())
    }

    /// Destroys `subject`'s key: what it sealed reads `[erased]` from now on, in every
    /// process. True when a live key was destroyed.
    pub async fn destroy(&self, subject: &str) -> Result<bool, StoreError> {
        self.cache.lock().expect("key cache").remove(subject);
        self.keys.destroy_key(subject).await
    }
}

/// The tenant whose key sealed an envelope's personal fields, if any.
pub fn subject(envelope: &Envelope) -> Option<String> {
    subject_of(
        envelope.stream.as_str(),
        &envelope.event_type,
        &envelope.data,
    )
}

/// True when the envelope carries a personal field with a value.
pub(crate) fn has_personal_fields(envelope: &Envelope) -> bool {
    personal_fields(&envelope.event_type).any(|f| {
        f.get(&envelope.data, &envelope.metadata)
            .is_some_and(|v| !v.is_null())
    })
}

/// The keys of some tenants, read once, to open the personal fields of one answer.
#[derive(Debug, Default)]
pub struct Opener {
    keys: HashMap<String, Held>,
}

/// A tenant's key as an opener holds it.
#[derive(Debug)]
enum Held {
    /// Live, with its sub-keys derived.
    Live(Sealer),
    /// Destroyed.
    Erased,
}

impl Opener {
    /// An opener holding `keys`.
    fn of(keys: HashMap<String, KeyState>) -> Opener {
        let keys = keys
            .into_iter()
            .map(|(subject, state)| {
                let held = match state {
                    KeyState::Live(key) => Held::Live(Sealer::new(&key)),
                    KeyState::Erased(_) => Held::Erased,
                };
                (subject, held)
            })
            .collect();
        Opener { keys }
    }

    /// Adds the keys another opener holds.
    pub fn extend(&mut self, other: Opener) {
        self.keys.extend(other.keys);
    }

    /// Opens the personal fields of a stored event.
    pub fn open_envelope(&self, event: &mut Envelope) {
        self.open_event(
            event.stream.as_str(),
            &event.event_type,
            &mut event.data,
            &mut event.metadata,
        );
    }

    /// Opens the personal fields of an event given by its parts.
    pub fn open_event(
        &self,
        stream: &str,
        event_type: &str,
        data: &mut Value,
        metadata: &mut Value,
    ) {
        let Some(subject) = subject_of(stream, event_type, data) else {
            return;
        };
        for field in personal_fields(event_type) {
            if let Some(value) = field.get_mut(data, metadata)
                && let Some(opened) = self.opened(&subject, field, value)
            {
                *value = opened;
            }
        }
    }

    /// Opens a read model's copy of a personal field of `subject`'s events.
    pub fn open_text(&self, subject: &str, field: FieldPath, text: &mut String) {
        match self.opened(subject, field, &Value::String(text.clone())) {
            Some(Value::String(opened)) => *text = opened,
            Some(other) => *text = other.to_string(),
            None => {}
        }
    }

    /// Opens a read model's optional copy of a personal field of `subject`'s events.
    pub fn open_opt(&self, subject: &str, field: FieldPath, text: &mut Option<String>) {
        if let Some(text) = text {
            self.open_text(subject, field, text);
        }
    }

    /// The value to show for `value`, stored in `field` of one of `subject`'s events; `None`
    /// to show it as stored (plain text of a tenant that is not erased).
    fn opened(&self, subject: &str, field: FieldPath, value: &Value) -> Option<Value> {
        match self.keys.get(subject) {
            Some(Held::Erased) => Some(Value::from(ERASED)),
            Some(Held::Live(key)) if seal::is_sealed(value) => {
                let text = value.as_str().expect("sealed values are text");
                Some(key.open(&field.label(), text).unwrap_or_else(|| {
                    tracing::warn!(
                        tenant = subject,
                        field = %field.label(),
                        "a sealed field does not open with its tenant's key; it reads as erased"
                    );
                    Value::from(ERASED)
                }))
            }
            None if seal::is_sealed(value) => Some(Value::from(ERASED)),
            _ => None,
        }
    }
}
