//! The personal fields of the catalog: what is stored sealed with the tenant's data key and
//! reads as `[erased]` once the tenant is erased.

use serde_json::Value;

use crate::SlugClaimed;

/// Fields of an event's `data` that hold personal data, by event type.
pub const PERSONAL_DATA: &[(&str, &str)] = &[
    ("TenantRegistered", "name"),
    ("PaymentVerified", "checkout_session_id"),
    ("OnboardingLockAcquired", "holder"),
    ("OnboardingLockReleased", "holder"),
    ("BackendSyncFailed", "last_error"),
];

/// Paths in an event's `metadata` that hold personal data, whatever the event's type: the
/// person a token acted for (and where events recorded before named tokens kept it).
pub const PERSONAL_METADATA: &[&[&str]] = &[&["actor", "on_behalf_of"], &["on_behalf_of"]];

/// Where a personal field sits in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldPath {
    /// A top-level key of `data`.
    Data(&'static str),
    /// A path of keys into `metadata`.
    Metadata(&'static [&'static str]),
}

impl FieldPath {
    /// The path as one text (`data.name`, `metadata.actor.on_behalf_of`): what a sealed value
    /// is bound to, so that it cannot be moved to another field.
    pub fn label(&self) -> String {
        match self {
            FieldPath::Data(key) => format!("data.{key}"),
            FieldPath::Metadata(keys) => format!("metadata.{}", keys.join(".")),
        }
    }

    /// The field in `data` or `metadata`, if the event has it.
    pub fn get<'a>(&self, data: &'a Value, metadata: &'a Value) -> Option<&'a Value> {
        match self {
            FieldPath::Data(key) => data.get(*key),
            FieldPath::Metadata(keys) => keys.iter().try_fold(metadata, |at, key| at.get(*key)),
        }
    }

    /// The field in `data` or `metadata`, mutable, if the event has it.
    pub fn get_mut<'a>(
        &self,
        data: &'a mut Value,
        metadata: &'a mut Value,
    ) -> Option<&'a mut Value> {
        match self {
            FieldPath::Data(key) => data.as_object_mut()?.get_mut(*key),
            FieldPath::Metadata(keys) => {
                let mut at = metadata;
                for key in *keys {
                    at = at.as_object_mut()?.get_mut(*key)?;
                }
                Some(at)
            }
        }
    }
}

/// The personal field of `data` a read model copies into its column: `tenant_phase.name`,
/// `onboarding_locks.holder`, `pending_syncs.last_error`.
pub const NAME: FieldPath = FieldPath::Data("name");
/// The lock holder.
pub const HOLDER: FieldPath = FieldPath::Data("holder");
/// The last error of a failed sync.
pub const LAST_ERROR: FieldPath = FieldPath::Data("last_error");
/// The person a token acted for, as `actor.on_behalf_of` records it.
pub const ON_BEHALF_OF: FieldPath = FieldPath::Metadata(&["actor", "on_behalf_of"]);

/// Every personal field an event of `event_type` may carry.
pub fn personal_fields(event_type: &str) -> impl Iterator<Item = FieldPath> {
    PERSONAL_DATA
        .iter()
        .filter(move |(t, _)| *t == event_type)
        .map(|(_, key)| FieldPath::Data(key))
        .chain(
            PERSONAL_METADATA
                .iter()
                .map(|keys| FieldPath::Metadata(keys)),
        )
}

/// The tenant whose key seals an event's personal fields: the id of a `tenant-<id>` stream,
/// or the tenant a slug claim names. Events of other streams belong to no tenant and are
/// stored as sent.
pub fn subject_of(stream: &str, event_type: &str, data: &Value) -> Option<String> {
    let (category, id) = stream.split_once('-')?;
    match category {
        "tenant" => Some(id.to_string()),
        "slug" if event_type == SlugClaimed::TYPE => data
            .get("tenant_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_by_type_include_the_metadata_paths() {
        let labels: Vec<_> = personal_fields("TenantRegistered")
            .map(|f| f.label())
            .collect();
        assert_eq!(
            labels,
            [
                "data.name",
                "metadata.actor.on_behalf_of",
                "metadata.on_behalf_of"
            ]
        );
        let labels: Vec<_> = personal_fields("OrganizationCreated")
            .map(|f| f.label())
            .collect();
        assert_eq!(
            labels,
            ["metadata.actor.on_behalf_of", "metadata.on_behalf_of"]
        );
    }

    #[test]
    fn every_listed_type_is_in_the_catalog() {
        for (event_type, _) in PERSONAL_DATA {
            assert!(
                crate::TenantEvent::TYPES.contains(event_type),
                "{event_type}"
            );
        }
    }

    #[test]
    fn paths_find_their_fields() {
        let mut data = json!({"name": "Acme", "slug": "acme"});
        let mut metadata = json!({"actor": {"role": "admin", "on_behalf_of": "alice"}});
        assert_eq!(
            NAME.get_mut(&mut data, &mut metadata).cloned(),
            Some(json!("Acme"))
        );
        assert_eq!(
            ON_BEHALF_OF.get_mut(&mut data, &mut metadata).cloned(),
            Some(json!("alice"))
        );
        assert_eq!(HOLDER.get_mut(&mut data, &mut metadata), None);
        let mut text = json!("x");
        assert_eq!(ON_BEHALF_OF.get_mut(&mut data, &mut text), None);
    }

    #[test]
    fn subjects_are_tenants_and_their_slug_claims() {
        let claim = json!({"tenant_id": "t1"});
        assert_eq!(subject_of("tenant-t1", "X", &json!({})), Some("t1".into()));
        assert_eq!(
            subject_of("slug-acme", "SlugClaimed", &claim),
            Some("t1".into())
        );
        assert_eq!(subject_of("slug-acme", "Other", &claim), None);
        assert_eq!(subject_of("session-1", "X", &claim), None);
        assert_eq!(subject_of("nodash", "X", &claim), None);
    }
}
