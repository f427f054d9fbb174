//! Reading requests: bodies, paths, queries and headers, each refusal an [`ApiError`] with a code.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderName};
use ledger_commands::Idempotency;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::auth::{hex, sha256};
use crate::error::{ApiError, Code};
use crate::quote::{bound_quotes, excerpt, quote};
use crate::state::ApiConfig;

/// `Idempotency-Key`.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set to `true` on a response that replays the first response to the same idempotency key.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest id accepted in a header (`Idempotency-Key`, `X-Correlation-Id`, `X-Causation-Id`).
pub(crate) const MAX_HEADER_ID_LEN: usize = 200;

/// What `If-Match` must match: `*`, or a seq (at most 19 digits), bare, quoted or weak.
pub(crate) const IF_MATCH_PATTERN: &str = r#"^(\*|[0-9]{1,19}|"[0-9]{1,19}"|W/"[0-9]{1,19}")$"#;

/// Largest seq or position a query takes (the databases store them as signed 64-bit).
pub(crate) const MAX_POSITION: u64 = i64::MAX as u64;

/// Whether `text` is an id a header may carry: 1 to [`MAX_HEADER_ID_LEN`] visible ASCII
/// characters.
pub(crate) fn is_header_id(text: &str) -> bool {
    (1..=MAX_HEADER_ID_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

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
            Code::InvalidBody,
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            Code::InvalidJson,
            format!(
                "the body is not valid JSON: {}",
                bound_quotes(&e.to_string())
            ),
        )),
    }
}

/// Deserializes a JSON object into a request type; a misfit is 422 `invalid_body`.
pub(crate) fn from_object<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(object)).map_err(|e| {
        ApiError::new(
            Code::InvalidBody,
            format!(
                "the body does not fit this request: {}",
                bound_quotes(&e.to_string())
            ),
        )
    })
}

/// A tenant id from the URL: a UUID in its hyphenated form (36 characters).
pub(crate) fn tenant_id(text: &str) -> Result<Uuid, ApiError> {
    let parsed = Uuid::try_parse(text).ok().filter(|_| text.len() == 36);
    parsed.ok_or_else(|| {
        ApiError::new(
            Code::InvalidTenantId,
            format!(
                "{} is not a tenant id: tenant ids are UUIDs like 0190c3a1-7b2e-7c4d-9f00-1a2b3c4d5e6f",
                quote(text)
            ),
        )
        .with("tenant_id", excerpt(text))
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
    if !is_header_id(key) {
        return Err(ApiError::new(
            Code::InvalidIdempotencyKey,
            format!(
                "Idempotency-Key must be 1 to {MAX_HEADER_ID_LEN} visible ASCII characters, e.g. a UUID"
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

/// The seq in `If-Match: "<seq>"` (`W/"<seq>"` and a bare number too); `None` when absent or
/// `*`. Exactly the values [`IF_MATCH_PATTERN`] matches.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    let digits = match text.strip_prefix("W/") {
        Some(weak) => unquoted(weak),
        None if text.starts_with('"') => unquoted(text),
        None => Some(text),
    };
    let seq = digits
        .filter(|d| (1..=19).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok());
    seq.map(Some).ok_or_else(|| {
        ApiError::new(
            Code::InvalidIfMatch,
            format!(
                "If-Match must be the ETag of the resource, a quoted seq like \"5\", not {}",
                quote(text)
            ),
        )
    })
}

/// The page size a query asked for: `limit`, else the default; 1 to the configured maximum.
pub(crate) fn page_limit(limit: Option<usize>, config: &ApiConfig) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(config.default_page_size);
    if limit == 0 || limit > config.max_page_size {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!("limit must be 1 to {}, not {limit}", config.max_page_size),
        ));
    }
    Ok(limit)
}

/// A seq or position of a query (`name`), at most [`MAX_POSITION`].
pub(crate) fn position_param(name: &str, value: Option<u64>) -> Result<Option<u64>, ApiError> {
    match value {
        Some(v) if v > MAX_POSITION => Err(ApiError::new(
            Code::InvalidQuery,
            format!("{name} must be 0 to {MAX_POSITION}, not {v}"),
        )),
        other => Ok(other),
    }
}

/// A seq sent in a JSON body: a non-negative integer up to [`MAX_POSITION`], also written
/// with a fraction of zero (`3.0`), which JSON Schema counts as an integer too.
pub(crate) fn body_seq(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=MAX_POSITION as f64).contains(f))
                .map(|f| f as u64)
        })
        .filter(|seq| *seq <= MAX_POSITION)
}

/// Rewrites the fields `names` of `object` that hold a whole number written with a fraction
/// of zero (`2.0`, an integer to JSON Schema) as integers, so they deserialize as such.
pub(crate) fn whole_numbers(object: &mut Map<String, Value>, names: &[&str]) {
    for name in names {
        if let Some(value @ Value::Number(_)) = object.get_mut(*name)
            && value.as_u64().is_none()
            && let Some(f) = value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
        {
            *value = Value::from(f as u64);
        }
    }
}

/// `text` without its surrounding double quotes, if it has them.
fn unquoted(text: &str) -> Option<&str> {
    text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
}

/// The `ETag` of a resource at `seq`.
pub(crate) fn etag(seq: u64) -> String {
    format!("\"{seq}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_lose_their_zero_fraction() {
        let mut object =
            serde_json::json!({"member": 2.0, "members": 3, "other": 1.0, "half": 1.5})
                .as_object()
                .unwrap()
                .clone();
        whole_numbers(&mut object, &["member", "members", "half", "absent"]);
        assert_eq!(object["member"], serde_json::json!(2));
        assert!(object["member"].is_u64());
        assert_eq!(object["members"], serde_json::json!(3));
        assert!(object["other"].is_f64(), "only the named fields change");
        assert!(object["half"].is_f64(), "a fraction stays");
    }

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
        for bad in ["\"x\"", "W/5", "\"5", "+5", "12345678901234567890", "\"\""] {
            h.insert(axum::http::header::IF_MATCH, bad.parse().unwrap());
            assert_eq!(
                if_match(&h).unwrap_err().code(),
                Code::InvalidIfMatch,
                "{bad}"
            );
        }
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
