//! Sign-in sessions: the token a person pasted, sealed (XChaCha20-Poly1305) into an HttpOnly,
//! SameSite=Strict cookie with its expiry and the session's CSRF token. The token is checked
//! again on every request, so a revoked token ends its sessions; a database reader who has the
//! console's secret but no token cannot make a cookie that passes.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::ConsoleError;
use super::secret::{Keys, random_key};
use crate::auth::{Caller, TokenRef, Writer, authenticate, hex};
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "ledger_session";
/// The cookie that pairs the sign-in form with its browser (double submit).
pub(crate) const SIGN_IN_COOKIE: &str = "ledger_sign_in";
/// What a sealed cookie is bound to, so no other sealed text opens as a session.
const AAD: &[u8] = b"ledger console session v1";
/// Nonce length of XChaCha20-Poly1305.
const NONCE_LEN: usize = 24;
/// Longest cookie value opened.
const MAX_COOKIE_LEN: usize = 2048;

/// What a session cookie holds.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Sealed {
    /// The token.
    pub(crate) token: String,
    /// When the session ends (Unix seconds).
    pub(crate) expires: i64,
    /// The session's CSRF token.
    pub(crate) csrf: String,
}

/// `sealed` as a cookie value.
pub(crate) fn seal(keys: &Keys, sealed: &Sealed) -> String {
    let cipher = XChaCha20Poly1305::new((&keys.session).into());
    let random = random_key();
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(&random[..NONCE_LEN]);
    let nonce = XNonce::from(nonce_bytes);
    let plain = serde_json::to_vec(sealed).expect("a session serializes");
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .expect("sealing cannot fail"),
    );
    URL_SAFE_NO_PAD.encode(out)
}

/// The session in a cookie value, if it was sealed with these keys and is unexpired at `now`.
pub(crate) fn open(keys: &Keys, value: &str, now: i64) -> Option<Sealed> {
    if value.len() > MAX_COOKIE_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    if bytes.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new((&keys.session).into());
    let plain = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: sealed,
                aad: AAD,
            },
        )
        .ok()?;
    let sealed: Sealed = serde_json::from_slice(&plain).ok()?;
    (sealed.expires > now).then_some(sealed)
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` for the console: HttpOnly, SameSite=Strict, under `/ui`, Secure when the
/// console is reached over TLS; `max_age` 0 clears it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("cookie values are base64 or hex")
}

/// Whether the request reached the console over TLS (directly or through a proxy that says so),
/// or the console's public URL is `https`.
pub(crate) fn over_tls(headers: &HeaderMap, state: &AppState) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    forwarded
        || state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// A fresh CSRF token.
pub(crate) fn new_csrf() -> String {
    hex(&random_key())
}

/// Whether a form's CSRF token is the session's.
pub(crate) fn csrf_matches(expected: &str, sent: Option<&str>) -> bool {
    sent.is_some_and(|s| !s.is_empty() && bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

/// A signed-in person: who their token says they are, and their session's CSRF token.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// Who the token belongs to.
    pub(crate) caller: Caller,
    /// The token's identity, as the events it appends record it.
    pub(crate) token: TokenRef,
    /// The CSRF token every form of this session carries.
    pub(crate) csrf: String,
}

impl Session {
    /// The writer for actions of this session, as the API's `Writer` extractor makes it: 403
    /// for an auditor.
    pub(crate) fn writer(&self) -> Result<Writer, ApiError> {
        Writer::new(self.caller.clone(), self.token.clone(), None)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, sent: Option<&str>) -> Result<(), ConsoleError> {
        if csrf_matches(&self.csrf, sent) {
            Ok(())
        } else {
            Err(ConsoleError::csrf())
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let value = cookie(&parts.headers, COOKIE_NAME).ok_or(ConsoleError::SignIn)?;
        let keys = state.console.keys().await?;
        let now = (state.clock)().timestamp();
        let sealed = open(keys, value, now).ok_or(ConsoleError::SignIn)?;
        let (caller, token) = match authenticate(state, &sealed.token).await {
            Ok(found) => found,
            Err(e) if e.status().is_client_error() => return Err(ConsoleError::SignIn),
            Err(e) => return Err(e.into()),
        };
        Ok(Session {
            caller,
            token,
            csrf: sealed.csrf,
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ConsoleError> {
        match <Session as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(session) => Ok(Some(session)),
            Err(ConsoleError::SignIn) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Clears the session cookie.
pub(crate) fn clear(headers: &mut HeaderMap, secure: bool) {
    headers.append(SET_COOKIE, set_cookie(COOKIE_NAME, "", 0, secure));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Sealed {
        Sealed {
            token: "la_secret".into(),
            expires: 1_000,
            csrf: new_csrf(),
        }
    }

    #[test]
    fn sealed_sessions_open_until_they_expire() {
        let keys = Keys::random();
        let session = sealed();
        let value = seal(&keys, &session);
        assert!(!value.contains("la_secret"));
        assert_eq!(open(&keys, &value, 999).as_ref(), Some(&session));
        assert_eq!(open(&keys, &value, 1_000), None);
        assert_ne!(
            seal(&keys, &session),
            value,
            "every seal takes a fresh nonce"
        );
    }

    #[test]
    fn tampered_or_foreign_cookies_do_not_open() {
        let keys = Keys::random();
        let value = seal(&keys, &sealed());
        assert_eq!(open(&Keys::random(), &value, 0), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            assert_eq!(open(&keys, &URL_SAFE_NO_PAD.encode(&bytes), 0), None);
            bytes[i] ^= 1;
        }
        for junk in ["", "x", "!!!!", &"A".repeat(MAX_COOKIE_LEN + 1)] {
            assert_eq!(open(&keys, junk, 0), None);
        }
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; ledger_session=abc"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, COOKIE_NAME), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "ledger"), None);
    }

    #[test]
    fn csrf_tokens_match_whole() {
        let t = new_csrf();
        assert!(csrf_matches(&t, Some(&t)));
        assert!(!csrf_matches(&t, Some(&t[1..])));
        assert!(!csrf_matches(&t, Some("")));
        assert!(!csrf_matches(&t, None));
    }
}
