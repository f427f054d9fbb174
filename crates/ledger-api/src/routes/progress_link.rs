//! `POST /v1/tenants/{id}/progress-link`: a signed, expiring URL of the tenant's progress page,
//! for the customer's app to hand to the person onboarding instead of a token.

use axum::Json;
use axum::extract::State;
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use ledger_domain::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Writer;
use crate::console::link::make;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{ApiPath, RawBody, from_object, json_object, tenant_id};
use crate::state::AppState;

/// Shortest lifetime a link may ask for, in seconds.
const MIN_TTL_SECONDS: u64 = 1;
/// Longest lifetime a link may ask for, in seconds (7 days).
const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// Longest holder a link may name.
const MAX_HOLDER_LEN: usize = 200;

/// The body of a progress-link request (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressLinkRequest {
    /// The tab (lock holder) the page is for: while another holder has the lock the page says
    /// setup is in progress in another tab. The URL carries only a keyed hash of it. 1 to 200
    /// characters, none of them a control character.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    pub holder: Option<String>,
    /// How long the link works, in seconds (1 to 604800; default: the server's
    /// `--progress-link-ttl`, 2 hours unless set).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    pub ttl_seconds: Option<u64>,
}

/// A progress link.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressLink {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The whole URL: the server's public URL (or the request's `Host`) and `path`.
    pub url: String,
    /// The page's path and signed query.
    pub path: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// Makes a signed link to the tenant's live progress page, valid for a limited time.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/progress-link",
    tag = "tenants",
    request_body(content = Option<ProgressLinkRequest>, description = "Empty, `{}`, or `{\"holder\": \"tab-b\", \"ttl_seconds\": 3600}`"),
    params(("id" = Uuid, Path, description = "The tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The link", body = ProgressLink),
        (status = 400, description = "`invalid_tenant_id` or `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's token, or an auditor token (links are made for the people onboarding, by their app)", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: an unknown field, a holder that is empty, too long or not printable, or a `ttl_seconds` out of range", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn progress_link(
    caller: Writer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<ProgressLink>), ApiError> {
    let tenant = tenant_id(&id)?;
    caller.require_tenant(tenant)?;
    let request: ProgressLinkRequest = from_object(json_object(&body)?)?;
    let holder = request.holder.as_deref().map(check_holder).transpose()?;
    let ttl = match request.ttl_seconds {
        None => state.config.progress_link_ttl.as_secs(),
        Some(t) if (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&t) => t,
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidBody,
                format!("ttl_seconds must be {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} (7 days)"),
            ));
        }
    };
    let loaded = state.executor.load(tenant).await?;
    if !loaded.state.is_registered() {
        return Err(DomainError::TenantNotFound.into());
    }
    let keys = state.console.keys().await?;
    let expires = (state.clock)() + TimeDelta::seconds(ttl as i64);
    let link = make(keys, tenant, holder, expires);
    let path = link.path(keys);
    let url = format!("{}{path}", base_url(&state, &headers));
    Ok((
        StatusCode::CREATED,
        Json(ProgressLink {
            tenant_id: tenant,
            url,
            path,
            expires_at: link.expires,
        }),
    ))
}

/// A holder: 1 to [`MAX_HOLDER_LEN`] characters, none of them a control character (what the
/// OpenAPI document's pattern says).
fn check_holder(holder: &str) -> Result<&str, ApiError> {
    let ok = !holder.is_empty()
        && holder.chars().count() <= MAX_HOLDER_LEN
        && !holder.chars().any(char::is_control);
    if ok {
        Ok(holder)
    } else {
        Err(ApiError::new(
            Code::InvalidBody,
            format!(
                "holder must be 1 to {MAX_HOLDER_LEN} characters without control characters, e.g. tab-b"
            ),
        ))
    }
}

/// Where the console is reached: the configured public URL, or `http://` and the request's
/// `Host` when it is a plain host name and port.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map(|h| format!("http://{h}"))
        .unwrap_or_default()
}
