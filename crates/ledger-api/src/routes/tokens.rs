//! `POST /v1/tenants/{id}/tokens`: issue a tenant token (admin). The token is shown once; only
//! its SHA-256 is stored, as a `TenantTokenIssued` event in `tenanttoken-<tenant id>`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use ledger_commands::{ExecuteError, Idempotency};
use ledger_core::{Envelope, EventStore, ExpectedSeq, NewEvent, Seq, StoreError, StreamName};
use ledger_domain::DomainError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{
    TOKEN_ISSUED, TenantTokenIssued, Writer, hex, new_tenant_token, tenant_token_name, token_stream,
};
use crate::context::RequestContext;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{
    ApiPath, IDEMPOTENT_REPLAYED, RawBody, from_object, idempotency, json_object, tenant_id,
};
use crate::state::AppState;
use crate::token_registry::check_name;

/// Metadata key of an idempotent request's key.
pub(crate) const KEY_KEY: &str = "idempotency_key";
/// Metadata key of an idempotent request's fingerprint.
pub(crate) const FINGERPRINT_KEY: &str = "idempotency_fingerprint";

/// The body of a token request (may be empty).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// A name for the token, recorded with every event it appends (1 to 64 letters, digits,
    /// `.`, `_` or `-`, not a UUID). Default: `token-` and the last 8 hex digits of its id.
    #[serde(default)]
    pub name: Option<String>,
}

/// An issued tenant token.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// The tenant the token reaches.
    pub tenant_id: Uuid,
    /// The token's id.
    pub token_id: Uuid,
    /// The token's name.
    pub name: String,
    /// The bearer token: shown in this response only, never again. Absent on an idempotent retry.
    pub token: Option<String>,
    /// False on an idempotent retry: the token was shown only in the first response.
    pub token_revealed: bool,
    /// A note for a person.
    pub message: String,
}

/// Issues a token that reaches only this tenant's resources (admin).
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/tokens",
    tag = "tenants",
    request_body(content = Option<IssueToken>, description = "Empty, `{}`, or `{\"name\": \"ops-bot\"}`"),
    params(
        ("id" = Uuid, Path, description = "The tenant id"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body issues nothing new; it cannot show the token again"),
        ("X-On-Behalf-Of" = Option<String>, Header, description = "The person or service an admin token acts for, recorded in `actor.on_behalf_of` (a tenant token sending it gets 403)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Issued; the token is in this response only", body = IssuedToken),
        (status = 400, description = "`invalid_tenant_id`, `invalid_json` or `invalid_header`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin token (an auditor or a tenant token)", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_body` or `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn issue_token(
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
    let IssueToken { name } = from_object(json_object(&body)?)?;
    if let Some(name) = &name {
        check_name(name).map_err(|e| ApiError::new(Code::InvalidBody, e.to_string()))?;
    }
    let idem = idempotency(&headers, "POST", uri.path(), &body)?;
    if !state.executor.load(tenant).await?.state.is_registered() {
        return Err(DomainError::TenantNotFound.into());
    }
    let stream = token_stream(tenant);
    if let Some(idem) = &idem
        && let Some(first) = replayed(state.store.as_ref(), &stream, idem).await?
    {
        state.metrics.replay("token");
        return Ok(replay_response(tenant, &first));
    }
    let (token, hash) = new_tenant_token(tenant);
    let token_id = Uuid::now_v7();
    let name = name.unwrap_or_else(|| tenant_token_name(token_id));
    let data = json!(TenantTokenIssued {
        token_id,
        name: Some(name.clone()),
        sha256: hex(&hash),
    });
    let mut metadata = ctx.metadata(&caller);
    let mut event = NewEvent::new(TOKEN_ISSUED, data);
    if let Some(idem) = &idem {
        metadata.insert(KEY_KEY.into(), Value::String(idem.key.clone()));
        metadata.insert(
            FINGERPRINT_KEY.into(),
            Value::String(idem.fingerprint.clone()),
        );
        event = event.with_id(idem.event_id(stream.as_str(), 0));
    }
    let event = event.with_metadata(Value::Object(metadata));
    let result = state
        .store
        .append(stream.clone(), ExpectedSeq::Any, vec![event])
        .await;
    match result {
        Ok(_) => {
            let body = IssuedToken {
                tenant_id: tenant,
                token_id,
                name,
                token: Some(token),
                token_revealed: true,
                message: "keep this token secret: it is shown only now; send it as `Authorization: Bearer <token>`".into(),
            };
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        // A concurrent retry with the same key won: answer with its outcome.
        Err(StoreError::EventIdReused { .. }) if idem.is_some() => {
            let idem = idem.as_ref().expect("checked above");
            match replayed(state.store.as_ref(), &stream, idem).await? {
                Some(first) => {
                    state.metrics.replay("token");
                    Ok(replay_response(tenant, &first))
                }
                None => Err(ApiError::internal("token event id reused but not found")),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The first token event of an idempotent request, if it was already appended.
async fn replayed(
    store: &dyn EventStore,
    stream: &StreamName,
    idem: &Idempotency,
) -> Result<Option<Envelope>, ApiError> {
    let id = idem.event_id(stream.as_str(), 0);
    let mut events = store.read_stream(stream.clone(), Seq(1));
    while let Some(envelope) = events.try_next().await? {
        if envelope.event_id != id {
            continue;
        }
        let fingerprint = envelope
            .metadata
            .get(FINGERPRINT_KEY)
            .and_then(Value::as_str);
        if fingerprint != Some(idem.fingerprint.as_str()) {
            return Err(ExecuteError::IdempotencyKeyReused {
                key: idem.key.clone(),
            }
            .into());
        }
        return Ok(Some(envelope));
    }
    Ok(None)
}

fn replay_response(tenant: Uuid, first: &Envelope) -> Response {
    let (token_id, name) = match serde_json::from_value::<TenantTokenIssued>(first.data.clone()) {
        Ok(t) => (t.token_id, t.name),
        Err(_) => (first.event_id, None),
    };
    let body = IssuedToken {
        tenant_id: tenant,
        token_id,
        name: name.unwrap_or_else(|| tenant_token_name(token_id)),
        token: None,
        token_revealed: false,
        message: "this retries an earlier request with the same Idempotency-Key: the token it issued was shown only in the first response; if it was lost, issue a new one with a new key".into(),
    };
    (
        StatusCode::CREATED,
        [(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        )],
        Json(body),
    )
        .into_response()
}
