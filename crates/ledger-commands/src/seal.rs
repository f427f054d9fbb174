//! Sealing one personal value with a tenant's data key, and opening it again.
//!
//! A sealed value is the JSON string `sealed:v1:` followed by the unpadded URL-safe base64 of
//! `nonce (24 bytes) || XChaCha20-Poly1305 ciphertext and tag` of the value's JSON text, with
//! the field's path (`data.name`) as associated data, so a sealed value opens only in its own
//! field. The nonce is derived from the key, the path and the plaintext (HMAC-SHA-256), so the
//! same value in the same field of the same tenant always seals to the same text: a retried
//! append stays a replay, and equal values can be searched for (the audit index) without
//! opening anything. Two sub-keys are derived from the data key, one to encrypt and one to
//! derive nonces.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use ledger_core::DataKey;
use serde_json::Value;
use sha2::Sha256;

/// What a personal field reads as once its tenant's key is destroyed.
pub const ERASED: &str = "[erased]";

/// The prefix of every sealed value.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// Bytes of the nonce at the front of a sealed value.
const NONCE_LEN: usize = 24;

/// HMAC-SHA-256 of `parts` under `key`.
fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        m.update(part);
    }
    m.finalize().into_bytes().into()
}

/// The nonce in 24 bytes.
fn nonce_of(bytes: &[u8]) -> XNonce {
    let bytes: [u8; NONCE_LEN] = bytes.try_into().expect("a nonce is 24 bytes");
    XNonce::from(bytes)
}

/// A data key ready to seal and open: its two sub-keys, derived once.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Derives the sub-keys of `key`.
    pub fn new(key: &DataKey) -> Sealer {
        let enc = mac(&key.0, &[b"ledger seal v1: encryption"]);
        Sealer {
            cipher: XChaCha20Poly1305::new((&enc).into()),
            nonce_key: mac(&key.0, &[b"ledger seal v1: nonce"]),
        }
    }

    /// Seals `value`, the field at `path`.
    pub fn seal(&self, path: &str, value: &Value) -> String {
        seal_with(self, path, value)
    }

    /// Opens a value sealed for the field at `path`; `None` when it is no sealed text, or was
    /// not sealed by this key for that field.
    pub fn open(&self, path: &str, sealed: &str) -> Option<Value> {
        open_with(self, path, sealed)
    }
}

/// Seals `value`, the field at `path`, with `key`.
pub fn seal(key: &DataKey, path: &str, value: &Value) -> String {
    Sealer::new(key).seal(path, value)
}

/// Opens a value sealed for the field at `path` with `key` (see [`Sealer::open`]).
pub fn open(key: &DataKey, path: &str, sealed: &str) -> Option<Value> {
    Sealer::new(key).open(path, sealed)
}

fn seal_with(keys: &Sealer, path: &str, value: &Value) -> String {
    let plain = serde_json::to_vec(value).expect("JSON values serialize");
    let derived = mac(&keys.nonce_key, &[path.as_bytes(), &[0], &plain]);
    let nonce = nonce_of(&derived[..NONCE_LEN]);
    let payload = Payload {
        msg: &plain,
        aad: path.as_bytes(),
    };
    let sealed = keys
        .cipher
        .encrypt(&nonce, payload)
        .expect("XChaCha20-Poly1305 encrypts any message under the size limit");
    let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn open_with(keys: &Sealer, path: &str, sealed: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD
        .decode(sealed.strip_prefix(SEALED_PREFIX)?)
        .ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let payload = Payload {
        msg: ciphertext,
        aad: path.as_bytes(),
    };
    let plain = keys.cipher.decrypt(&nonce_of(nonce), payload).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// True when `value` is a sealed text.
pub fn is_sealed(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.starts_with(SEALED_PREFIX))
}

/// A fresh random data key.
pub fn fresh_key() -> DataKey {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source failed");
    DataKey(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sealed_value_opens_in_its_field_with_its_key_only() {
        let key = DataKey([1; 32]);
        let sealed = seal(&key, "data.name", &json!("Acme Corp"));
        assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
        assert!(!sealed.contains("Acme"));
        assert!(is_sealed(&json!(sealed)));
        assert_eq!(open(&key, "data.name", &sealed), Some(json!("Acme Corp")));
        assert_eq!(open(&key, "data.holder", &sealed), None, "another field");
        assert_eq!(
            open(&DataKey([2; 32]), "data.name", &sealed),
            None,
            "another key"
        );
    }

    #[test]
    fn sealing_is_deterministic_per_key_field_and_value() {
        let key = DataKey([3; 32]);
        let a = seal(&key, "data.holder", &json!("tab-a"));
        assert_eq!(a, seal(&key, "data.holder", &json!("tab-a")));
        assert_ne!(a, seal(&key, "data.holder", &json!("tab-b")));
        assert_ne!(a, seal(&key, "data.name", &json!("tab-a")));
        assert_ne!(a, seal(&DataKey([4; 32]), "data.holder", &json!("tab-a")));
    }

    #[test]
    fn any_json_value_round_trips() {
        let key = DataKey([5; 32]);
        for v in [
            json!(null),
            json!(12),
            json!({"a": [1, "é"]}),
            json!(""),
            json!("x".repeat(5000)),
        ] {
            assert_eq!(open(&key, "p", &seal(&key, "p", &v)), Some(v));
        }
    }

    #[test]
    fn damaged_or_foreign_text_does_not_open() {
        let key = DataKey([6; 32]);
        let sealed = seal(&key, "p", &json!("secret"));
        let mut damaged = sealed.clone().into_bytes();
        let last = damaged.len() - 1;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        let damaged = String::from_utf8(damaged).unwrap();
        assert_eq!(open(&key, "p", &damaged), None);
        assert_eq!(open(&key, "p", "secret"), None);
        assert_eq!(open(&key, "p", "sealed:v1:"), None);
        assert_eq!(open(&key, "p", "sealed:v1:!!"), None);
        assert!(!is_sealed(&json!(12)));
    }

    #[test]
    fn fresh_keys_differ() {
        assert_ne!(fresh_key(), fresh_key());
    }
}
