//! Admin tokens stored in the database, so that every server sharing it accepts the same ones.
//!
//! The registry is one stream, `admintoken-all`: `AdminTokenIssued` events hold a token's id,
//! name, role and SHA-256 (never the token), `AdminTokenRevoked` events end one. Its state is
//! the fold of that stream ([`Registry`]); writers decide on the folded state and append with the
//! seq they folded, so two issuers racing for one name cannot both win. Servers keep a copy
//! ([`RegistryCache`]) and check the stream's seq again once it is older than a short TTL, so a
//! revocation takes effect on every running server within that TTL.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ledger_core::{Envelope, EventStore, ExpectedSeq, NewEvent, Seq, StoreError, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::{generate_admin_token, hex, sha256, unhex32};

/// Category of the admin token registry's stream.
pub const ADMIN_TOKEN_STREAM_CATEGORY: &str = "admintoken";
/// Type of the event recording an issued admin token.
pub const ADMIN_TOKEN_ISSUED: &str = "AdminTokenIssued";
/// Type of the event recording a revoked admin token.
pub const ADMIN_TOKEN_REVOKED: &str = "AdminTokenRevoked";
/// The name a server registers the token it starts with under (`bootstrap-2`, ... when taken).
pub const BOOTSTRAP_NAME: &str = "bootstrap";
/// Longest token name.
const MAX_NAME_LEN: usize = 64;
/// How often a registry write is decided again when other writers keep getting in first.
const MAX_ATTEMPTS: usize = 10;

/// What a stored token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every resource.
    Admin,
    /// Reads every tenant's events and read models; writes nothing.
    Auditor,
}

/// The event recording an issued admin token: its id, name, role and hash, never the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenIssued {
    /// The token's id.
    pub token_id: Uuid,
    /// Its name, unique among the tokens not revoked.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the whole token text.
    pub sha256: String,
}

/// The event recording a revoked admin token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenRevoked {
    /// The token's id.
    pub token_id: Uuid,
}

/// A stored token's public facts (never the token or its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The token's id.
    pub token_id: Uuid,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name is not a valid token name.
    #[error(
        "{name:?} is not a token name: use 1 to {MAX_NAME_LEN} letters, digits, `.`, `_` or `-`, not a UUID"
    )]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A token that is not revoked already has this name.
    #[error(
        "a token named {name:?} exists and is not revoked: revoke it first, or choose another name"
    )]
    NameTaken {
        /// The name.
        name: String,
    },
    /// No token has this name or id.
    #[error("no admin token is named {key:?} or has that id")]
    NotFound {
        /// The name or id looked for.
        key: String,
    },
}

impl TokenError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Store(e) => e.code(),
            TokenError::InvalidName { .. } => "invalid_token_name",
            TokenError::NameTaken { .. } => "token_name_taken",
            TokenError::NotFound { .. } => "token_not_found",
        }
    }
}

/// One token and its hash.
#[derive(Clone, Debug)]
struct Entry {
    info: TokenInfo,
    hash: [u8; 32],
}

/// The registry as its stream says it is.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: Vec<Entry>,
    seq: Seq,
}

/// What the registry says of a token's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A token that is not revoked: its id, name and role.
    Active(Uuid, String, Role),
    /// A revoked token.
    Revoked,
    /// Not a stored token.
    Unknown,
}

impl Registry {
    /// Folds one event of the registry's stream; events it cannot read are skipped (and logged).
    fn apply(&mut self, envelope: &Envelope) {
        self.seq = envelope.seq;
        let at = envelope.recorded_at;
        match envelope.event_type.as_str() {
            ADMIN_TOKEN_ISSUED => {
                match serde_json::from_value::<AdminTokenIssued>(envelope.data.clone()) {
                    Ok(e) => match unhex32(&e.sha256) {
                        Some(hash) => self.entries.push(Entry {
                            info: TokenInfo {
                                token_id: e.token_id,
                                name: e.name,
                                role: e.role,
                                created_at: at,
                                revoked: false,
                                revoked_at: None,
                            },
                            hash,
                        }),
                        None => unreadable(envelope, "the hash is not 64 hex digits"),
                    },
                    Err(e) => unreadable(envelope, &e.to_string()),
                }
            }
            ADMIN_TOKEN_REVOKED => {
                match serde_json::from_value::<AdminTokenRevoked>(envelope.data.clone()) {
                    Ok(e) => {
                        let found = self
                            .entries
                            .iter_mut()
                            .find(|t| t.info.token_id == e.token_id);
                        if let Some(t) = found.filter(|t| !t.info.revoked) {
                            t.info.revoked = true;
                            t.info.revoked_at = Some(at);
                        }
                    }
                    Err(e) => unreadable(envelope, &e.to_string()),
                }
            }
            _ => unreadable(envelope, "unknown event type"),
        }
    }

    /// Every token, oldest first.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenInfo> {
        self.entries.iter().map(|e| &e.info)
    }

    /// The stream's seq this state was folded up to.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Whether any token is not revoked.
    pub fn has_active(&self) -> bool {
        self.entries.iter().any(|e| !e.info.revoked)
    }

    /// What the registry says of `hash`, comparing with every stored hash in constant time.
    pub(crate) fn lookup(&self, hash: &[u8; 32]) -> Lookup {
        let mut found = Lookup::Unknown;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(hash)) {
                found = if e.info.revoked {
                    Lookup::Revoked
                } else {
                    Lookup::Active(e.info.token_id, e.info.name.clone(), e.info.role)
                };
            }
        }
        found
    }

    /// The token with this hash, revoked or not.
    fn by_hash(&self, hash: &[u8; 32]) -> Option<&TokenInfo> {
        self.entries
            .iter()
            .find(|e| bool::from(e.hash.ct_eq(hash)))
            .map(|e| &e.info)
    }

    /// The token `key` names: an id, or a name (the one not revoked, else the latest).
    fn find(&self, key: &str) -> Option<&TokenInfo> {
        if let Ok(id) = Uuid::try_parse(key) {
            return self.tokens().find(|t| t.token_id == id);
        }
        let named = || self.tokens().filter(|t| t.name == key);
        named().find(|t| !t.revoked).or_else(|| named().last())
    }

    /// Whether a token that is not revoked has `name`.
    fn name_taken(&self, name: &str) -> bool {
        self.tokens().any(|t| t.name == name && !t.revoked)
    }

    /// The first of `bootstrap`, `bootstrap-2`, ... that no token uses while not revoked.
    fn free_bootstrap_name(&self) -> String {
        (1..)
            .map(|n| match n {
                1 => BOOTSTRAP_NAME.to_string(),
                n => format!("{BOOTSTRAP_NAME}-{n}"),
            })
            .find(|name| !self.name_taken(name))
            .expect("an unbounded range has a free name")
    }
}

fn unreadable(envelope: &Envelope, reason: &str) {
    tracing::warn!(stream = %envelope.stream, seq = %envelope.seq, reason, "skipped an unreadable admin token event");
}

/// The registry's stream.
pub fn registry_stream() -> StreamName {
    StreamName::from_parts(ADMIN_TOKEN_STREAM_CATEGORY, "all").expect("a valid stream name")
}

/// A token name as the OpenAPI document states it ([`check_name`] checks it): 1 to 64
/// letters, digits, `.`, `_` or `-`, not a UUID (hyphenated or 32 hex digits).
pub const NAME_PATTERN: &str = "^(?![0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)(?![0-9a-fA-F]{32}$)[A-Za-z0-9._-]{1,64}$";

/// Checks a token name: 1 to 64 letters, digits, `.`, `_` or `-`, and not a UUID (so that
/// `revoke NAME|ID` is never ambiguous).
pub fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && Uuid::try_parse(name).is_err();
    if ok {
        Ok(())
    } else {
        Err(TokenError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN + 1).collect(),
        })
    }
}

/// Reads and folds the registry.
pub async fn load(store: &dyn EventStore) -> Result<Registry, StoreError> {
    let mut registry = Registry::default();
    let mut events = store.read_stream(registry_stream(), Seq(1));
    while let Some(envelope) = events.try_next().await? {
        registry.apply(&envelope);
    }
    Ok(registry)
}

/// What a decision on the registry's state says to do.
enum Decision<T> {
    /// Append this event (with the folded seq as the expectation), then answer `T`.
    Append(NewEvent, T),
    /// Nothing to write.
    Done(T),
}

/// Folds the registry, decides, appends with the folded seq as the expectation, and decides
/// again on a conflict. Returns the decision's answer and the registry after it.
async fn decide<T>(
    store: &dyn EventStore,
    mut decision: impl FnMut(&Registry) -> Result<Decision<T>, TokenError>,
) -> Result<(T, Registry), TokenError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let registry = load(store).await?;
        let (event, answer) = match decision(&registry)? {
            Decision::Done(answer) => return Ok((answer, registry)),
            Decision::Append(event, answer) => (event, answer),
        };
        let expected = ExpectedSeq::Exact(registry.seq);
        match store.append(registry_stream(), expected, vec![event]).await {
            Ok(_) => return Ok((answer, load(store).await?)),
            Err(StoreError::Conflict(_)) if attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// An `AdminTokenIssued` event for `token`, with `metadata`.
fn issued_event(
    token: &str,
    token_id: Uuid,
    name: &str,
    role: Role,
    metadata: &serde_json::Value,
) -> NewEvent {
    let data = json!(AdminTokenIssued {
        token_id,
        name: name.to_string(),
        role,
        sha256: hex(&sha256(token.as_bytes())),
    });
    NewEvent::new(ADMIN_TOKEN_ISSUED, data).with_metadata(metadata.clone())
}

/// The stored facts of the token with `id` (present once its event is folded).
fn info(registry: &Registry, id: Uuid) -> Result<TokenInfo, TokenError> {
    registry
        .tokens()
        .find(|t| t.token_id == id)
        .cloned()
        .ok_or_else(|| {
            StoreError::backend(format!("admin token {id} is missing after its append")).into()
        })
}

/// A freshly issued token: the token itself (shown once) and its stored facts.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The bearer token; only its hash is stored.
    pub token: String,
    /// What the registry holds.
    pub info: TokenInfo,
}

/// Issues a new token named `name` with `role`; `metadata` goes on the event (e.g. the actor).
pub async fn issue(
    store: &dyn EventStore,
    name: &str,
    role: Role,
    metadata: serde_json::Value,
) -> Result<Issued, TokenError> {
    check_name(name)?;
    let token = generate_admin_token();
    let id = Uuid::now_v7();
    let ((), registry) = decide(store, |registry| {
        if registry.name_taken(name) {
            return Err(TokenError::NameTaken {
                name: name.to_string(),
            });
        }
        Ok(Decision::Append(
            issued_event(&token, id, name, role, &metadata),
            (),
        ))
    })
    .await?;
    Ok(Issued {
        info: info(&registry, id)?,
        token,
    })
}

/// A revocation's outcome.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The token, as the registry holds it now.
    pub info: TokenInfo,
    /// True when it had been revoked before (nothing was written).
    pub was_already_revoked: bool,
}

/// Revokes the token `key` names (its id, or its name); revoking a revoked token writes nothing.
pub async fn revoke(
    store: &dyn EventStore,
    key: &str,
    metadata: serde_json::Value,
) -> Result<Revoked, TokenError> {
    let (found, registry) = decide(store, |registry| {
        let token = registry.find(key).ok_or_else(|| TokenError::NotFound {
            key: key.chars().take(100).collect(),
        })?;
        if token.revoked {
            return Ok(Decision::Done((token.token_id, true)));
        }
        let data = json!(AdminTokenRevoked {
            token_id: token.token_id
        });
        let event = NewEvent::new(ADMIN_TOKEN_REVOKED, data).with_metadata(metadata.clone());
        Ok(Decision::Append(event, (token.token_id, false)))
    })
    .await?;
    let (id, was_already_revoked) = found;
    Ok(Revoked {
        info: info(&registry, id)?,
        was_already_revoked,
    })
}

/// Every stored token, oldest first.
pub async fn list(store: &dyn EventStore) -> Result<Vec<TokenInfo>, StoreError> {
    Ok(load(store).await?.tokens().cloned().collect())
}

/// Stores `token` as an admin token named `bootstrap` (or the next free `bootstrap-N`) unless
/// its hash is stored already; returns its stored facts (`revoked` tells whether it still works).
pub async fn register(
    store: &dyn EventStore,
    token: &str,
    metadata: serde_json::Value,
) -> Result<TokenInfo, TokenError> {
    let hash = sha256(token.as_bytes());
    let id = Uuid::now_v7();
    let (known, registry) = decide(store, |registry| {
        if let Some(known) = registry.by_hash(&hash) {
            return Ok(Decision::Done(known.token_id));
        }
        let name = registry.free_bootstrap_name();
        let event = issued_event(token, id, &name, Role::Admin, &metadata);
        Ok(Decision::Append(event, id))
    })
    .await?;
    info(&registry, known)
}

/// Stores `token` as the admin token `bootstrap` only if no token is active yet (a database's
/// first start); returns its facts, or `None` when the database already has an active token.
pub async fn register_first(
    store: &dyn EventStore,
    token: &str,
    metadata: serde_json::Value,
) -> Result<Option<TokenInfo>, TokenError> {
    let id = Uuid::now_v7();
    let (stored, registry) = decide(store, |registry| {
        if registry.has_active() {
            return Ok(Decision::Done(false));
        }
        let name = registry.free_bootstrap_name();
        let event = issued_event(token, id, &name, Role::Admin, &metadata);
        Ok(Decision::Append(event, true))
    })
    .await?;
    if stored {
        info(&registry, id).map(Some)
    } else {
        Ok(None)
    }
}

/// A server's copy of the registry, read again once older than its TTL.
#[derive(Debug)]
pub(crate) struct RegistryCache {
    ttl: Duration,
    view: RwLock<View>,
    refreshing: tokio::sync::Mutex<()>,
}

/// The registry and when its seq was last checked.
#[derive(Debug, Default)]
struct View {
    registry: Registry,
    checked: Option<Instant>,
}

impl RegistryCache {
    /// An empty cache that reads the registry on first use and trusts a copy for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            view: RwLock::new(View::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// What the registry says of `hash`, from a copy no older than the TTL. With
    /// `recheck_unknown`, a hash the copy does not know makes it check the stream first, so a
    /// token issued a moment ago works at once (concurrent checks share one read).
    pub(crate) async fn lookup(
        &self,
        store: &dyn EventStore,
        hash: &[u8; 32],
        recheck_unknown: bool,
    ) -> Result<Lookup, StoreError> {
        let wanted = |found: &Lookup| !recheck_unknown || *found != Lookup::Unknown;
        if let Some(found) = self.fresh_lookup(hash).filter(wanted) {
            return Ok(found);
        }
        let arrived = Instant::now();
        // One request reads the registry again; the others wait for its copy.
        let _refreshing = self.refreshing.lock().await;
        {
            let view = self.read();
            // A check that started after this request arrived is as good as its own.
            if view.checked.is_some_and(|t| t >= arrived) {
                return Ok(view.registry.lookup(hash));
            }
        }
        if let Some(found) = self.fresh_lookup(hash).filter(wanted) {
            return Ok(found);
        }
        let started = Instant::now();
        let seq = store.stream_seq(registry_stream()).await?;
        let stale = self.read().registry.seq != seq;
        let registry = if stale {
            Some(load(store).await?)
        } else {
            None
        };
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        if let Some(registry) = registry {
            view.registry = registry;
        }
        view.checked = Some(started);
        Ok(view.registry.lookup(hash))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh_lookup(&self, hash: &[u8; 32]) -> Option<Lookup> {
        let view = self.read();
        let fresh = view.checked.is_some_and(|t| t.elapsed() < self.ttl);
        fresh.then(|| view.registry.lookup(hash))
    }
}

#[cfg(test)]
mod tests {
    use ledger_memory::MemoryStore;
    use serde_json::Value;

    use super::*;

    fn meta() -> Value {
        json!({"actor": "test"})
    }

    #[test]
    fn names_are_checked() {
        for ok in ["ops", "ci-2026.01", "A_b"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        let uuid = Uuid::now_v7().to_string();
        let long = "x".repeat(65);
        for bad in ["", "a b", "ünï", &uuid, &long] {
            assert_eq!(
                check_name(bad).unwrap_err().code(),
                "invalid_token_name",
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn issue_revoke_and_list() {
        let store = MemoryStore::default();
        let a = issue(&store, "ops", Role::Admin, meta()).await.unwrap();
        assert!(a.token.starts_with("la_"));
        let err = issue(&store, "ops", Role::Admin, meta()).await.unwrap_err();
        assert_eq!(err.code(), "token_name_taken");
        let hash = sha256(a.token.as_bytes());
        assert_eq!(
            load(&store).await.unwrap().lookup(&hash),
            Lookup::Active(a.info.token_id, "ops".into(), Role::Admin)
        );

        let r = revoke(&store, "ops", meta()).await.unwrap();
        assert!(r.info.revoked && !r.was_already_revoked && r.info.revoked_at.is_some());
        assert_eq!(load(&store).await.unwrap().lookup(&hash), Lookup::Revoked);
        let again = revoke(&store, &a.info.token_id.to_string(), meta())
            .await
            .unwrap();
        assert!(again.was_already_revoked);
        assert_eq!(
            revoke(&store, "nobody", meta()).await.unwrap_err().code(),
            "token_not_found"
        );

        // A revoked name may be used again; revoking by name then means the new one.
        let b = issue(&store, "ops", Role::Admin, meta()).await.unwrap();
        let listed = list(&store).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].revoked, listed[1].revoked), (true, false));
        assert_eq!(
            revoke(&store, "ops", meta()).await.unwrap().info.token_id,
            b.info.token_id
        );
        let text = serde_json::to_string(&listed).unwrap();
        assert!(
            !text.contains(&a.token) && !text.contains(&hex(&hash)),
            "{text}"
        );
    }

    #[tokio::test]
    async fn bootstrap_tokens_are_registered_once() {
        let store = MemoryStore::default();
        let first = register_first(&store, "la_first", meta())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.name, BOOTSTRAP_NAME);
        assert!(
            register_first(&store, "la_second", meta())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(register(&store, "la_first", meta()).await.unwrap(), first);
        let other = register(&store, "from-env", meta()).await.unwrap();
        assert_eq!(other.name, "bootstrap-2");
        revoke(&store, BOOTSTRAP_NAME, meta()).await.unwrap();
        // A revoked token stays revoked when a server starts with it again.
        assert!(register(&store, "la_first", meta()).await.unwrap().revoked);
        assert_eq!(list(&store).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_cache_sees_a_new_token_at_once_and_a_revocation_after_its_ttl() {
        let store = MemoryStore::default();
        let a = issue(&store, "ops", Role::Admin, meta()).await.unwrap();
        let hash = sha256(a.token.as_bytes());
        let ops = Lookup::Active(a.info.token_id, "ops".into(), Role::Admin);
        let cache = RegistryCache::new(Duration::from_millis(200));
        let look = |hash: [u8; 32], recheck: bool| {
            let (cache, store) = (&cache, &store);
            async move { cache.lookup(store, &hash, recheck).await.unwrap() }
        };
        assert_eq!(look(hash, true).await, ops);
        // A token issued since the last check works at once; a revocation within the TTL.
        let b = issue(&store, "ci", Role::Auditor, meta()).await.unwrap();
        let b_hash = sha256(b.token.as_bytes());
        assert_eq!(look(b_hash, false).await, Lookup::Unknown);
        assert_eq!(
            look(b_hash, true).await,
            Lookup::Active(b.info.token_id, "ci".into(), Role::Auditor)
        );
        revoke(&store, "ops", meta()).await.unwrap();
        assert_eq!(look(hash, true).await, ops);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(look(hash, true).await, Lookup::Revoked);
        assert_eq!(look(sha256(b"other"), true).await, Lookup::Unknown);
    }
}
