//! Bearer tokens: admin, auditor and tenant tokens, hashed, cached and compared in constant time.
//!
//! Admin and auditor tokens live in the database's token registry (see `token_registry`), so
//! every server sharing the database accepts the same ones and a revocation reaches them all.
//! Routes that only read take a [`Caller`]; routes that write take a [`Writer`], which refuses
//! auditors, so no write route can forget to.
//!
//! A tenant token is `lt_<tenant uuid, 32 hex>_<64 hex secret>`: it names its tenant, so checking
//! it reads one small stream, `tenanttoken-<tenant uuid>`, whose `TenantTokenIssued` events hold
//! the SHA-256 of every token issued to that tenant (never a token itself). Verified hashes are
//! cached in memory; several servers sharing a database each read the stream once per token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use futures::TryStreamExt;
use ledger_core::{EventStore, Seq, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::{ApiError, Code};
use crate::state::AppState;
use crate::token_registry::{BOOTSTRAP_NAME, Lookup, Role};

/// Category of the streams holding tenant token hashes.
pub const TOKEN_STREAM_CATEGORY: &str = "tenanttoken";
/// Type of the event recording an issued tenant token.
pub const TOKEN_ISSUED: &str = "TenantTokenIssued";
/// Prefix of tenant tokens.
const TENANT_PREFIX: &str = "lt_";
/// Metadata key under which events appended before tokens were recorded in `actor` named the
/// admin token (reserved: clients cannot set it).
pub const TOKEN_METADATA_KEY: &str = ledger_core::trail::TOKEN_KEY;
/// The header naming the person or service an admin token acts for.
pub static ON_BEHALF_OF: HeaderName = HeaderName::from_static("x-on-behalf-of");
/// Longest `X-On-Behalf-Of`.
pub const MAX_ON_BEHALF_OF_LEN: usize = 200;

/// The event recording an issued tenant token: its id, name and hash, never the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTokenIssued {
    /// The token's id.
    pub token_id: Uuid,
    /// Its name (absent on tokens issued before tokens had names: see [`tenant_token_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Hex SHA-256 of the whole token text.
    pub sha256: String,
}

/// The name of a tenant token issued without one: `token-` and the last 8 hex digits of its id.
pub fn tenant_token_name(token_id: Uuid) -> String {
    let id = token_id.simple().to_string();
    format!("token-{}", &id[id.len() - 8..])
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Decodes 64 hex digits.
pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// `n` random bytes from the operating system, as hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex(&buf)
}

/// A fresh admin token: `la_` and 64 random hex digits.
pub fn generate_admin_token() -> String {
    format!("la_{}", random_hex(32))
}

/// The stream of a tenant's token hashes.
pub(crate) fn token_stream(tenant: Uuid) -> StreamName {
    StreamName::from_parts(TOKEN_STREAM_CATEGORY, &tenant.to_string())
        .expect("a uuid is a valid stream id")
}

/// A fresh token for `tenant` and its SHA-256.
pub(crate) fn new_tenant_token(tenant: Uuid) -> (String, [u8; 32]) {
    let token = format!("{TENANT_PREFIX}{}_{}", tenant.simple(), random_hex(32));
    let hash = sha256(token.as_bytes());
    (token, hash)
}

/// The tenant a tenant token names, if it is shaped like one.
fn token_tenant(token: &str) -> Option<Uuid> {
    let rest = token.strip_prefix(TENANT_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() != 64 {
        return None;
    }
    Uuid::try_parse(id).ok()
}

/// Tenant token hashes already verified against the store, by tenant, with each token's id.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    verified: RwLock<HashMap<Uuid, Vec<Verified>>>,
}

/// A verified token hash and the token's identity.
type Verified = ([u8; 32], TokenRef);

impl TokenCache {
    fn get(&self, tenant: Uuid, hash: &[u8; 32]) -> Option<TokenRef> {
        let verified = self.verified.read().unwrap_or_else(|p| p.into_inner());
        find_equal(verified.get(&tenant)?, hash)
    }

    fn insert(&self, tenant: Uuid, hash: [u8; 32], token: TokenRef) {
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        let tokens = verified.entry(tenant).or_default();
        if find_equal(tokens, &hash).is_none() {
            tokens.push((hash, token));
        }
    }
}

/// The token whose hash is `hash`, comparing with every one in constant time.
fn find_equal(tokens: &[Verified], hash: &[u8; 32]) -> Option<TokenRef> {
    let mut found = None;
    for (h, token) in tokens {
        if bool::from(h.ct_eq(hash)) {
            found = Some(token.clone());
        }
    }
    found
}

/// A token's identity as the events it appends record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRef {
    /// Its id (`None` for an admin token given to this server only, outside the registry).
    pub id: Option<Uuid>,
    /// Its name.
    pub name: Arc<str>,
}

/// Who is calling, as their bearer token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// An admin token: every resource.
    Admin {
        /// The token's name in the registry.
        token: Arc<str>,
    },
    /// An auditor token: reads every resource, writes nothing.
    Auditor {
        /// The token's name in the registry.
        token: Arc<str>,
    },
    /// A tenant token: only this tenant's resources.
    Tenant(Uuid),
}

impl Caller {
    /// The role recorded in the `actor` of the events this caller appends.
    pub fn role(&self) -> &'static str {
        match self {
            Caller::Admin { .. } => "admin",
            Caller::Auditor { .. } => "auditor",
            Caller::Tenant(_) => "tenant",
        }
    }

    /// Refuses everyone but the admin.
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } => Ok(()),
            Caller::Auditor { .. } => Err(ApiError::forbidden(
                "this needs the admin token; an auditor token only reads",
            )),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this needs the admin token; a tenant token reaches only its own tenant",
            )),
        }
    }

    /// Refuses tenant tokens: what every tenant shares is read by the admin and auditors only.
    pub(crate) fn require_all_tenants(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } | Caller::Auditor { .. } => Ok(()),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this needs the admin token or an auditor token; a tenant token reaches only its own tenant",
            )),
        }
    }

    /// Refuses a tenant token of another tenant.
    pub(crate) fn require_tenant(&self, tenant: Uuid) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } | Caller::Auditor { .. } => Ok(()),
            Caller::Tenant(own) if *own == tenant => Ok(()),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this token belongs to another tenant; it reaches only its own tenant's resources",
            )),
        }
    }

    /// Refuses a tenant token for any stream but its own `tenant-<id>`.
    pub(crate) fn require_stream(&self, stream: &StreamName) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } | Caller::Auditor { .. } => Ok(()),
            Caller::Tenant(own) => {
                if stream.category() == "tenant" && stream.id() == own.to_string() {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(format!(
                        "a tenant token reaches only its own stream tenant-{own}; other streams need the admin token"
                    )))
                }
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (caller, _) = authenticate(state, bearer_token(&parts.headers)?).await?;
        Ok(caller)
    }
}

/// Who acted, as the `actor` of the events a request appends records it:
/// `{role, token, token_id, tenant?, on_behalf_of?}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `admin` or `tenant`.
    pub role: &'static str,
    /// The token.
    pub token: TokenRef,
    /// The tenant of a tenant token.
    pub tenant: Option<Uuid>,
    /// `X-On-Behalf-Of`: the person or service an admin token acted for.
    pub on_behalf_of: Option<String>,
}

impl Actor {
    /// The `actor` metadata value.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), Value::from(self.role));
        m.insert("token".into(), Value::from(&*self.token.name));
        if let Some(id) = self.token.id {
            m.insert("token_id".into(), Value::from(id.to_string()));
        }
        if let Some(tenant) = self.tenant {
            m.insert("tenant".into(), Value::from(tenant.to_string()));
        }
        if let Some(person) = &self.on_behalf_of {
            m.insert("on_behalf_of".into(), Value::from(person.as_str()));
        }
        Value::Object(m)
    }
}

/// A caller that may write: an admin or a tenant token, never an auditor (403). Every route
/// that appends takes one, and records its [`Actor`] in the events' metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    /// Who is calling.
    pub caller: Caller,
    /// What the events record of them.
    pub actor: Actor,
}

impl std::ops::Deref for Writer {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (caller, token) = authenticate(state, bearer_token(&parts.headers)?).await?;
        Writer::new(caller, token, on_behalf_of(&parts.headers)?)
    }
}

impl Writer {
    /// The writer `caller` with `token` is, acting for `on_behalf_of`: 403 for an auditor, and
    /// for a tenant token acting for someone.
    pub(crate) fn new(
        caller: Caller,
        token: TokenRef,
        on_behalf_of: Option<String>,
    ) -> Result<Writer, ApiError> {
        let tenant = match &caller {
            Caller::Auditor { .. } => {
                return Err(ApiError::forbidden(
                    "an auditor token only reads: writes need the admin token or a tenant token",
                ));
            }
            Caller::Admin { .. } => None,
            Caller::Tenant(id) => Some(*id),
        };
        if tenant.is_some() && on_behalf_of.is_some() {
            return Err(ApiError::forbidden(
                "a tenant token acts for its tenant only: X-On-Behalf-Of needs the admin token",
            ));
        }
        Ok(Writer {
            actor: Actor {
                role: caller.role(),
                token,
                tenant,
                on_behalf_of,
            },
            caller,
        })
    }
}

/// `X-On-Behalf-Of`: 1 to [`MAX_ON_BEHALF_OF_LEN`] printable ASCII characters (spaces
/// inside allowed), or absent.
fn on_behalf_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(&ON_BEHALF_OF) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let printable = text.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if text.is_empty() || text.len() > MAX_ON_BEHALF_OF_LEN || !printable {
        return Err(ApiError::new(
            Code::InvalidHeader,
            format!(
                "X-On-Behalf-Of must be 1 to {MAX_ON_BEHALF_OF_LEN} printable ASCII characters naming a person or service, e.g. alice@example.com"
            ),
        ));
    }
    Ok(Some(text.to_string()))
}

/// The token of the `Authorization: Bearer <token>` header, or 401.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "this needs a token: send the header `Authorization: Bearer <token>`",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "the Authorization header must be `Bearer <token>` with the admin token or a tenant token",
            )
        })
}

/// Who `token` belongs to and the token's identity, or 401.
pub(crate) async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<(Caller, TokenRef), ApiError> {
    let hash = sha256(token.as_bytes());
    let tenant = token_tenant(token);
    // A token shaped like a tenant token is not looked for again in the registry.
    let recheck = tenant.is_none();
    match state
        .admin_tokens
        .lookup(state.store.as_ref(), &hash, recheck)
        .await?
    {
        Lookup::Active(id, name, role) => {
            let name: Arc<str> = name.into();
            let caller = match role {
                Role::Admin => Caller::Admin {
                    token: name.clone(),
                },
                Role::Auditor => Caller::Auditor {
                    token: name.clone(),
                },
            };
            return Ok((caller, TokenRef { id: Some(id), name }));
        }
        Lookup::Revoked => {
            return Err(ApiError::unauthorized(
                "this token was revoked: use another token",
            ));
        }
        Lookup::Unknown => {}
    }
    if state
        .local_admin_hash
        .is_some_and(|local| bool::from(hash.ct_eq(&local)))
    {
        let name: Arc<str> = BOOTSTRAP_NAME.into();
        let caller = Caller::Admin {
            token: name.clone(),
        };
        return Ok((caller, TokenRef { id: None, name }));
    }
    let invalid = || {
        ApiError::unauthorized(
            "this token is not valid: check it was copied whole, or ask an admin for a new tenant token",
        )
    };
    let Some(tenant) = tenant else {
        return Err(invalid());
    };
    if let Some(found) = state.tokens.get(tenant, &hash) {
        return Ok((Caller::Tenant(tenant), found));
    }
    let issued = issued_tokens(state.store.as_ref(), tenant).await?;
    match find_equal(&issued, &hash) {
        Some(found) => {
            state.tokens.insert(tenant, hash, found.clone());
            Ok((Caller::Tenant(tenant), found))
        }
        None => Err(invalid()),
    }
}

/// The hashes of every token issued to `tenant`, with each token's identity.
async fn issued_tokens(store: &dyn EventStore, tenant: Uuid) -> Result<Vec<Verified>, ApiError> {
    let mut events = store.read_stream(token_stream(tenant), Seq(1));
    let mut tokens = Vec::new();
    while let Some(envelope) = events.try_next().await? {
        if envelope.event_type != TOKEN_ISSUED {
            continue;
        }
        match serde_json::from_value::<TenantTokenIssued>(envelope.data) {
            Ok(issued) => {
                if let Some(hash) = unhex32(&issued.sha256) {
                    let name = issued
                        .name
                        .unwrap_or_else(|| tenant_token_name(issued.token_id));
                    let token = TokenRef {
                        id: Some(issued.token_id),
                        name: name.into(),
                    };
                    tokens.push((hash, token));
                }
            }
            Err(e) => {
                tracing::warn!(stream = %envelope.stream, seq = %envelope.seq, error = %e, "unreadable token event")
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tokens_name_their_tenant() {
        let tenant = Uuid::now_v7();
        let (token, hash) = new_tenant_token(tenant);
        assert_eq!(token_tenant(&token), Some(tenant));
        assert_eq!(unhex32(&hex(&hash)), Some(hash));
        assert_eq!(token_tenant("lt_nope"), None);
        assert_eq!(token_tenant(&generate_admin_token()), None);
    }

    #[test]
    fn cache_compares_whole_hashes() {
        let cache = TokenCache::default();
        let tenant = Uuid::now_v7();
        let h = sha256(b"a");
        let token = TokenRef {
            id: Some(Uuid::now_v7()),
            name: "ops-bot".into(),
        };
        assert_eq!(cache.get(tenant, &h), None);
        cache.insert(tenant, h, token.clone());
        assert_eq!(cache.get(tenant, &h), Some(token));
        assert_eq!(cache.get(tenant, &sha256(b"b")), None);
        assert_eq!(cache.get(Uuid::now_v7(), &h), None);
    }

    #[test]
    fn unnamed_tenant_tokens_are_named_after_their_id() {
        let id = Uuid::parse_str("0190aaaa-bbbb-7ccc-8ddd-0123456789ab").unwrap();
        assert_eq!(tenant_token_name(id), "token-456789ab");
        assert!(crate::token_registry::check_name(&tenant_token_name(id)).is_ok());
    }
}
