//! Reading requests: bodies, paths, queries and headers, each refusal an [`ApiError`] with a code.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderName};
use ledger_commands::Idempotency;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::auth::{hex, sha256};
use crate::error::ApiError;

/// `Idempotency-Key`.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set to `true` on a response that replays the first response to the same idempotency key.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 200;

/// Path parameters, refused as `invalid_path` when they do not parse.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub T);

/// Query parameters, refused as `invalid_query` when they do not parse.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub T);

/// The raw request body, refused as `payload_too_large` past the body limit.
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(ApiError::from)
    }
}

/// The body as a JSON object; an empty body is `{}`.
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            "invalid_body",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// Deserializes a JSON object into a request type; a misfit is 422 `invalid_body`.
pub(crate) fn from_object<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(object)).map_err(|e| {
        ApiError::new(
            "invalid_body",
            format!("the body does not fit this request: {e}"),
        )
    })
}

/// A tenant id from the URL.
pub(crate) fn tenant_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(text).map_err(|_| {
        ApiError::new(
            "invalid_tenant_id",
            format!("{text:?} is not a tenant id: tenant ids are UUIDs like 0190c3a1-7b2e-7c4d-9f00-1a2b3c4d5e6f"),
        )
        .with("tenant_id", text)
    })
}

/// The caller's idempotency key with the fingerprint of this request (method, path, body).
pub(crate) fn idempotency(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters, e.g. a UUID"
            ),
        ));
    }
    let mut text = Vec::with_capacity(method.len() + path.len() + body.len() + 2);
    text.extend_from_slice(method.as_bytes());
    text.push(b'\n');
    text.extend_from_slice(path.as_bytes());
    text.push(b'\n');
    text.extend_from_slice(body);
    Ok(Some(Idempotency {
        key: key.to_string(),
        fingerprint: hex(&sha256(&text)),
    }))
}

/// The seq in `If-Match: "<seq>"` (`W/"<seq>"` and a bare number too); `None` when absent or `*`.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    tag.parse::<u64>().map(Some).map_err(|_| {
        ApiError::new(
            "invalid_if_match",
            format!(
                "If-Match must be the ETag of the resource, a quoted seq like \"5\", not {text:?}"
            ),
        )
    })
}

/// The `ETag` of a resource at `seq`.
pub(crate) fn etag(seq: u64) -> String {
    format!("\"{seq}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).unwrap(), None);
        for (text, want) in [
            ("\"5\"", Some(5)),
            ("W/\"7\"", Some(7)),
            ("3", Some(3)),
            ("*", None),
        ] {
            h.insert(axum::http::header::IF_MATCH, text.parse().unwrap());
            assert_eq!(if_match(&h).unwrap(), want, "{text}");
        }
        h.insert(axum::http::header::IF_MATCH, "\"x\"".parse().unwrap());
        assert_eq!(if_match(&h).unwrap_err().code(), "invalid_if_match");
    }

    #[test]
    fn fingerprints_differ_by_body() {
        let mut h = HeaderMap::new();
        h.insert(&IDEMPOTENCY_KEY, "k1".parse().unwrap());
        let a = idempotency(&h, "POST", "/p", b"{}").unwrap().unwrap();
        let b = idempotency(&h, "POST", "/p", b"{\"a\":1}")
            .unwrap()
            .unwrap();
        assert_eq!(a.key, "k1");
        assert_ne!(a.fingerprint, b.fingerprint);
    }
}
