//! `POST /v1/tenants/{id}/erase`: erase a tenant's personal data (admin).

use axum::Json;
use axum::extract::State;
use axum::http::header::ETAG;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ledger_commands::{CommandRequest, Erasure};
use ledger_domain::Command;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Writer;
use crate::context::RequestContext;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{ApiPath, RawBody, etag, idempotency, json_object, tenant_id};
use crate::routes::tenants::header;
use crate::state::AppState;

/// The body of an erasure: no field (send `{}` or nothing).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseBody {}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    /// The tenant.
    pub tenant_id: Uuid,
    /// When the tenant was erased (the first erasure's time when it was erased before).
    pub erased_at: DateTime<Utc>,
    /// True when the tenant had been erased before and this request appended nothing.
    pub was_already_erased: bool,
    /// True when this request destroyed the tenant's data key (false when it was gone).
    pub key_destroyed: bool,
    /// The tenant stream's seq after the erasure.
    pub seq: u64,
    /// The global position of the stream's last event.
    pub position: u64,
}

impl Erased {
    /// The answer for `erasure` of `tenant` (what the route and `ledger erase` print).
    pub fn of(tenant: Uuid, erasure: &Erasure) -> Erased {
        let executed = &erasure.executed;
        Erased {
            tenant_id: tenant,
            erased_at: executed
                .state
                .erased_at
                .expect("an erased tenant's state has its erasure time"),
            was_already_erased: executed.already_done,
            key_destroyed: erasure.key_destroyed,
            seq: executed.seq.0,
            position: executed.position.0,
        }
    }
}

/// Erases a tenant (admin): appends `TenantErased` and destroys the tenant's data key, so its
/// personal fields (name, lock holders, checkout session, sync errors, the person a token
/// acted for) read `[erased]` everywhere from now on, on every server. The hash chains still
/// verify: they cover the ciphertext. The tenant takes no more commands (410
/// `tenant_erased`); its slug stays claimed. Erasing again appends nothing.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/erase",
    tag = "tenants",
    request_body(content = Option<EraseBody>, description = "Empty, or `{}`"),
    params(
        ("id" = Uuid, Path, description = "The tenant id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first outcome"),
        ("X-Request-Id" = Option<String>, Header, description = "Recorded as `request_id`; generated when absent, echoed back"),
        ("X-Correlation-Id" = Option<String>, Header, description = "Recorded as `correlation_id`"),
        ("X-On-Behalf-Of" = Option<String>, Header, description = "The person or service the admin token acts for"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Erased (`was_already_erased` when it was before)", body = Erased, headers(("ETag" = String, description = "The stream's seq, quoted"))),
        (status = 400, description = "`invalid_tenant_id`, `invalid_json` or `invalid_header`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_body` or `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`unavailable` or `keys_unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn erase_tenant(
    caller: Writer,
    ctx: RequestContext,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    uri: Uri,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&id)?;
    caller.require_admin()?;
    if !json_object(&body)?.is_empty() {
        return Err(ApiError::new(
            Code::InvalidBody,
            "an erasure takes no fields: send an empty body or {}",
        ));
    }
    let vault = state.vault().ok_or_else(|| {
        ApiError::new(
            Code::KeysUnavailable,
            "this server keeps no data keys, so it cannot erase",
        )
    })?;
    let request = CommandRequest {
        command: Command::EraseTenant {},
        expected: None,
        metadata: ctx.metadata(&caller),
        idempotency: idempotency(&headers, "POST", uri.path(), &body)?,
    };
    let erasure = ledger_commands::erase(&state.executor, vault, tenant, request).await?;
    tracing::info!(tenant = %tenant, key_destroyed = erasure.key_destroyed, "tenant erased");
    let body = Erased::of(tenant, &erasure);
    Ok(([(ETAG, header(&etag(body.seq)))], Json(body)).into_response())
}
