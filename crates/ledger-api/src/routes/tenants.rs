//! `POST /v1/tenants` (register) and `GET /v1/tenants/{id}` (the folded state).

use axum::Json;
use axum::extract::State;
use axum::http::header::{ETAG, IF_NONE_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ledger_commands::CommandRequest;
use ledger_domain::{Command, DomainError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Caller, Writer};
use crate::context::RequestContext;
use crate::error::{ApiError, ErrorBody};
use crate::history::TenantAnswer;
use crate::input::{
    ApiPath, ApiQuery, IDEMPOTENT_REPLAYED, RawBody, etag, from_object, idempotency, json_object,
    tenant_id,
};
use crate::routes::history::{TenantQuery, as_of_answer};
use crate::state::AppState;
use crate::views::TenantView;

/// Namespace of tenant ids derived from idempotency keys.
const TENANT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_5465_6e61_6e74_4964_0001);

/// A tenant to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterTenant {
    /// Unique slug: 2 to 63 lowercase letters, digits and inner hyphens.
    #[schema(example = "acme")]
    pub slug: String,
    /// Display name.
    #[schema(example = "Acme Ltd")]
    pub name: String,
    /// The tenant's id; the server picks one (a UUID v7) when absent.
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
}

/// A registered tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The tenant stream's seq.
    pub seq: u64,
    /// The global position of the registration.
    pub position: u64,
}

/// Registers a tenant and claims its slug in one atomic append (admin).
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = RegisterTenant,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first response and write nothing"),
        ("X-On-Behalf-Of" = Option<String>, Header, description = "The person or service an admin token acts for, recorded in `actor.on_behalf_of` (a tenant token sending it gets 403)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "`invalid_json` or `invalid_header`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token (an auditor or a tenant token)", body = ErrorBody),
        (status = 409, description = "`slug_taken` or `tenant_exists`", body = ErrorBody),
        (status = 410, description = "`tenant_erased`: the tenant was erased; nothing personal can be written for it", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_slug`, `invalid_body`, `invalid_command` or `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn register(
    caller: Writer,
    ctx: RequestContext,
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let input: RegisterTenant = from_object(json_object(&body)?)?;
    let idem = idempotency(&headers, "POST", uri.path(), &body)?;
    let tenant_id = input.tenant_id.unwrap_or_else(|| match &idem {
        // A retry without a tenant id must land on the same tenant as the first request.
        Some(i) => Uuid::new_v5(&TENANT_ID_NAMESPACE, i.key.as_bytes()),
        None => Uuid::now_v7(),
    });
    let request = CommandRequest {
        command: Command::RegisterTenant {
            slug: input.slug,
            name: input.name,
        },
        expected: None,
        metadata: ctx.metadata(&caller),
        idempotency: idem,
    };
    let result = state.executor.register(tenant_id, request).await;
    let executed = result?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/tenants/{tenant_id}")) {
        headers.insert(LOCATION, location);
    }
    headers.insert(ETAG, header(&etag(executed.seq.0)));
    if executed.replayed {
        state.metrics.replay("register");
        headers.insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    let body = Registered {
        tenant_id,
        seq: executed.seq.0,
        position: executed.position.0,
    };
    Ok((StatusCode::CREATED, headers, Json(body)).into_response())
}

/// A header value from text known to be visible ASCII.
pub(crate) fn header(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("a visible ASCII header value")
}

/// The tenant's onboarding state folded from its stream, with `ETag: "<seq>"`; with `as_of`,
/// the tenant as it was at that instant (no ETag).
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    tag = "tenants",
    params(
        ("id" = Uuid, Path, description = "The tenant id"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier read: 304 when the tenant has not changed (ignored with `as_of`)"),
        TenantQuery,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant (`TenantView`); with `as_of`, as it was then (`TenantAsOf`)", body = TenantAnswer, headers(("ETag" = String, description = "The stream's seq, quoted (not with `as_of`)"))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "`invalid_tenant_id`, `invalid_as_of` or `invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's token", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn get_tenant(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant_id = tenant_id(&id)?;
    caller.require_tenant(tenant_id)?;
    if let Some(as_of) = &q.as_of {
        return as_of_answer(&state, tenant_id, as_of).await;
    }
    let loaded = state.executor.load(tenant_id).await?;
    if !loaded.state.is_registered() {
        return Err(DomainError::TenantNotFound.into());
    }
    let tag = etag(loaded.seq.0);
    let unchanged = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == tag)
        });
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(ETAG, header(&tag))]).into_response());
    }
    let view = TenantView::new(tenant_id, &loaded.state, loaded.seq.0, &state.config.policy);
    Ok(([(ETAG, header(&tag))], Json(view)).into_response())
}
