//! Bearer tokens: admin tokens and tenant tokens, hashed, cached and compared in constant time.
//!
//! Admin tokens live in the database's admin token registry (see `token_registry`), so every
//! server sharing the database accepts the same ones and a revocation reaches them all.
//!
//! A tenant token is `lt_<tenant uuid, 32 hex>_<64 hex secret>`: it names its tenant, so checking
//! it reads one small stream, `tenanttoken-<tenant uuid>`, whose `TenantTokenIssued` events hold
//! the SHA-256 of every token issued to that tenant (never a token itself). Verified hashes are
//! cached in memory; several servers sharing a database each read the stream once per token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use futures::TryStreamExt;
use ledger_core::{EventStore, Seq, StreamName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::token_registry::{BOOTSTRAP_NAME, Lookup};

/// Category of the streams holding tenant token hashes.
pub const TOKEN_STREAM_CATEGORY: &str = "tenanttoken";
/// Type of the event recording an issued tenant token.
pub const TOKEN_ISSUED: &str = "TenantTokenIssued";
/// Prefix of tenant tokens.
const TENANT_PREFIX: &str = "lt_";
/// Metadata key of the name of the admin token an event was appended with.
pub const TOKEN_METADATA_KEY: &str = "token";

/// The event recording an issued tenant token: its id and hash, never the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTokenIssued {
    /// The token's id.
    pub token_id: Uuid,
    /// Hex SHA-256 of the whole token text.
    pub sha256: String,
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

/// Token hashes already verified against the store, by tenant.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    verified: RwLock<HashMap<Uuid, Vec<[u8; 32]>>>,
}

impl TokenCache {
    fn contains(&self, tenant: Uuid, hash: &[u8; 32]) -> bool {
        let verified = self.verified.read().unwrap_or_else(|p| p.into_inner());
        verified
            .get(&tenant)
            .is_some_and(|hashes| any_equal(hashes, hash))
    }

    fn insert(&self, tenant: Uuid, hash: [u8; 32]) {
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        let hashes = verified.entry(tenant).or_default();
        if !any_equal(hashes, &hash) {
            hashes.push(hash);
        }
    }
}

/// Whether `hash` is one of `hashes`, comparing every one in constant time.
fn any_equal(hashes: &[[u8; 32]], hash: &[u8; 32]) -> bool {
    hashes
        .iter()
        .fold(subtle::Choice::from(0), |found, h| found | h.ct_eq(hash))
        .into()
}

/// Who is calling, as their bearer token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// An admin token: every resource.
    Admin {
        /// The token's name in the registry.
        token: Arc<str>,
    },
    /// A tenant token: only this tenant's resources.
    Tenant(Uuid),
}

impl Caller {
    /// The `actor` recorded in the metadata of the events this caller appends.
    pub fn actor(&self) -> String {
        match self {
            Caller::Admin { .. } => "admin".to_string(),
            Caller::Tenant(id) => format!("tenant:{id}"),
        }
    }

    /// The name of the admin token calling, recorded as `token` in the events' metadata.
    pub fn token_name(&self) -> Option<&str> {
        match self {
            Caller::Admin { token } => Some(token),
            Caller::Tenant(_) => None,
        }
    }

    /// Refuses everyone but the admin.
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } => Ok(()),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this needs the admin token; a tenant token reaches only its own tenant",
            )),
        }
    }

    /// Refuses a tenant token of another tenant.
    pub(crate) fn require_tenant(&self, tenant: Uuid) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } => Ok(()),
            Caller::Tenant(own) if *own == tenant => Ok(()),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this token belongs to another tenant; it reaches only its own tenant's resources",
            )),
        }
    }

    /// Refuses a tenant token for any stream but its own `tenant-<id>`.
    pub(crate) fn require_stream(&self, stream: &StreamName) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } => Ok(()),
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
        authenticate(state, bearer_token(&parts.headers)?).await
    }
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

/// Who `token` belongs to, or 401.
pub(crate) async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let hash = sha256(token.as_bytes());
    let tenant = token_tenant(token);
    // A token shaped like a tenant token is not looked for again in the admin registry.
    let recheck = tenant.is_none();
    match state
        .admin_tokens
        .lookup(state.store.as_ref(), &hash, recheck)
        .await?
    {
        Lookup::Active(name) => return Ok(Caller::Admin { token: name.into() }),
        Lookup::Revoked => {
            return Err(ApiError::unauthorized(
                "this admin token was revoked: use another admin token",
            ));
        }
        Lookup::Unknown => {}
    }
    if state
        .local_admin_hash
        .is_some_and(|local| bool::from(hash.ct_eq(&local)))
    {
        return Ok(Caller::Admin {
            token: BOOTSTRAP_NAME.into(),
        });
    }
    let invalid = || {
        ApiError::unauthorized(
            "this token is not valid: check it was copied whole, or ask an admin for a new tenant token",
        )
    };
    let Some(tenant) = tenant else {
        return Err(invalid());
    };
    if state.tokens.contains(tenant, &hash) {
        return Ok(Caller::Tenant(tenant));
    }
    let issued = issued_hashes(state.store.as_ref(), tenant).await?;
    if any_equal(&issued, &hash) {
        state.tokens.insert(tenant, hash);
        Ok(Caller::Tenant(tenant))
    } else {
        Err(invalid())
    }
}

/// The hashes of every token issued to `tenant`.
async fn issued_hashes(store: &dyn EventStore, tenant: Uuid) -> Result<Vec<[u8; 32]>, ApiError> {
    let mut events = store.read_stream(token_stream(tenant), Seq(1));
    let mut hashes = Vec::new();
    while let Some(envelope) = events.try_next().await? {
        if envelope.event_type != TOKEN_ISSUED {
            continue;
        }
        match serde_json::from_value::<TenantTokenIssued>(envelope.data) {
            Ok(issued) => hashes.extend(unhex32(&issued.sha256)),
            Err(e) => {
                tracing::warn!(stream = %envelope.stream, seq = %envelope.seq, error = %e, "unreadable token event")
            }
        }
    }
    Ok(hashes)
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
        assert!(!cache.contains(tenant, &h));
        cache.insert(tenant, h);
        assert!(cache.contains(tenant, &h));
        assert!(!cache.contains(tenant, &sha256(b"b")));
        assert!(!cache.contains(Uuid::now_v7(), &h));
    }
}
