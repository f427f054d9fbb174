//! The console's secret: one random key per database, kept in the key table under a subject no
//! tenant has, so every server sharing the database opens the same session cookies and accepts
//! the same progress links, also after a restart. A server without a key table makes one per
//! process.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use ledger_core::{DataKey, KeyState, KeyStore};
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::error::ApiError;

/// The key table's subject of the console's secret (tenants' subjects are UUIDs).
pub(crate) const SUBJECT: &str = "console-secret";

/// The keys derived from the secret, one per use.
#[derive(Clone)]
pub(crate) struct Keys {
    /// Seals session cookies (XChaCha20-Poly1305).
    pub(crate) session: [u8; 32],
    /// Signs progress links (HMAC-SHA256).
    pub(crate) link: [u8; 32],
}

#[cfg(test)]
impl Keys {
    /// Keys of a fresh random secret.
    pub(crate) fn random() -> Keys {
        Keys {
            session: random_key(),
            link: random_key(),
        }
    }
}

/// The console's secret, read or made on first use.
pub(crate) struct Secret {
    store: Option<Arc<dyn KeyStore>>,
    keys: OnceCell<Keys>,
}

impl Secret {
    /// A secret kept in `store`'s key table, or (without one) in this process only.
    pub(crate) fn new(store: Option<Arc<dyn KeyStore>>) -> Self {
        Self {
            store,
            keys: OnceCell::new(),
        }
    }

    /// The derived keys, reading (or making) the secret the first time.
    pub(crate) async fn keys(&self) -> Result<&Keys, ApiError> {
        self.keys
            .get_or_try_init(|| async {
                let fresh = random_key();
                let master = match &self.store {
                    None => fresh,
                    Some(store) => match store.key_for_writing(SUBJECT, DataKey(fresh)).await? {
                        KeyState::Live(key) => key.0,
                        KeyState::Erased(_) => {
                            return Err(ApiError::internal(
                                "the console's secret was destroyed in the key table; the console cannot sign",
                            ));
                        }
                    },
                };
                Ok(Keys {
                    session: derive(&master, b"ledger console session v1"),
                    link: derive(&master, b"ledger console progress link v1"),
                })
            })
            .await
    }
}

/// 32 random bytes from the operating system.
pub(crate) fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source failed");
    key
}

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn mac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A key for one use, derived from the secret.
fn derive(master: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    mac(master, purpose)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_without_a_key_table_keeps_one_secret() {
        let secret = Secret::new(None);
        let a = secret.keys().await.unwrap().session;
        let b = secret.keys().await.unwrap().session;
        assert_eq!(a, b);
        assert_ne!(secret.keys().await.unwrap().link, a);
        assert_ne!(Secret::new(None).keys().await.unwrap().session, a);
    }
}
