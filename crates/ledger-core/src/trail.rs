//! Who acted on an event and in which request, as its metadata records it: read back by
//! timelines, audit queries and their index.

use serde_json::Value;

/// Metadata key of the actor: text (`admin`, `cli`, `tenant:<id>`) or an object
/// `{role, token, token_id, tenant?, on_behalf_of?}`.
pub const ACTOR_KEY: &str = "actor";
/// Metadata key under which events appended before tokens were recorded in `actor` named the
/// admin token (reserved: clients cannot set it).
pub const TOKEN_KEY: &str = "token";
/// Metadata key of the request that appended the event.
pub const REQUEST_ID_KEY: &str = "request_id";
/// Metadata key of the correlation id the client sent.
pub const CORRELATION_ID_KEY: &str = "correlation_id";
/// Metadata key of the person or service a token acted for.
pub const ON_BEHALF_OF_KEY: &str = "on_behalf_of";

/// Who acted on an event and in which request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trail {
    /// The role (`admin`, `tenant:<id>`, `service`, `cli`, ...).
    pub role: Option<String>,
    /// The name of the token that acted.
    pub token: Option<String>,
    /// The person or service the token acted for.
    pub on_behalf_of: Option<String>,
    /// The client's correlation id.
    pub correlation_id: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
}

impl Trail {
    /// Reads a metadata object (anything else reads as no trail). A top-level `token` or
    /// `on_behalf_of` is read too, as events appended before tokens had names recorded them.
    pub fn of(metadata: &Value) -> Trail {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let name = |v: &Value| text(v).or_else(|| text(&v["name"]));
        let actor = &metadata[ACTOR_KEY];
        let role = match actor {
            Value::String(s) => Some(s.clone()),
            Value::Object(_) => match (text(&actor["role"]), text(&actor["tenant"])) {
                (Some(role), Some(tenant)) => Some(format!("{role}:{tenant}")),
                (role, tenant) => role.or(tenant),
            },
            _ => None,
        };
        Trail {
            role,
            token: name(&metadata[TOKEN_KEY]).or_else(|| name(&actor[TOKEN_KEY])),
            on_behalf_of: text(&metadata[ON_BEHALF_OF_KEY])
                .or_else(|| text(&actor[ON_BEHALF_OF_KEY])),
            correlation_id: text(&metadata[CORRELATION_ID_KEY]),
            request_id: text(&metadata[REQUEST_ID_KEY]),
        }
    }

    /// Reads metadata stored as JSON text (unreadable text reads as no trail).
    pub fn of_text(metadata: &str) -> Trail {
        serde_json::from_str::<Value>(metadata)
            .map(|m| Trail::of(&m))
            .unwrap_or_default()
    }

    /// The name an audit query's `actor` matches: the token's name, else the role.
    pub fn actor(&self) -> Option<&str> {
        self.token.as_deref().or(self.role.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_recorded_form_reads_back() {
        let t = Trail::of(&json!({"actor": "admin", "token": "bootstrap", "request_id": "r1"}));
        assert_eq!(t.role.as_deref(), Some("admin"));
        assert_eq!(t.actor(), Some("bootstrap"));
        assert_eq!(t.request_id.as_deref(), Some("r1"));
        let t = Trail::of(&json!({"actor": "tenant:x", "correlation_id": "c2"}));
        assert_eq!(
            (t.actor(), t.correlation_id.as_deref()),
            (Some("tenant:x"), Some("c2"))
        );
        let t = Trail::of(
            &json!({"actor": {"role": "service", "token": {"name": "ops-bot"},
            "on_behalf_of": "alice@example.com"}}),
        );
        assert_eq!(t.actor(), Some("ops-bot"));
        assert_eq!(t.role.as_deref(), Some("service"));
        assert_eq!(t.on_behalf_of.as_deref(), Some("alice@example.com"));
        let t = Trail::of(
            &json!({"actor": {"role": "tenant", "tenant": "x", "token": "t1"},
            "on_behalf_of": "bob"}),
        );
        assert_eq!(t.role.as_deref(), Some("tenant:x"));
        assert_eq!(
            (t.actor(), t.on_behalf_of.as_deref()),
            (Some("t1"), Some("bob"))
        );
        assert_eq!(Trail::of(&json!(null)), Trail::default());
        assert_eq!(Trail::of_text("not json"), Trail::default());
        assert_eq!(Trail::of_text(r#"{"actor":"cli"}"#).actor(), Some("cli"));
    }
}
