//! `POST /v1/tenants/{id}/commands/{name}`: run one onboarding command.

use axum::Json;
use axum::extract::State;
use axum::http::header::ETAG;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ledger_commands::CommandRequest;
use ledger_core::Seq;
use ledger_domain::Command;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Writer, hex, random_hex, sha256};
use crate::context::RequestContext;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::{
    ApiPath, IDEMPOTENT_REPLAYED, RawBody, body_seq, etag, from_object, idempotency, if_match,
    json_object, tenant_id,
};
use crate::openapi::CommandBody;
use crate::quote::quote;
use crate::routes::tenants::header;
use crate::state::AppState;
use crate::views::TenantView;

/// The commands this route runs, by URL name.
pub const COMMANDS: [&str; 13] = [
    "verify-payment",
    "acquire-lock",
    "release-lock",
    "create-organization",
    "provision-workspace",
    "issue-api-key",
    "complete-onboarding",
    "record-step-failure",
    "record-sync-failure",
    "record-sync-retry",
    "record-sync-success",
    "abandon-sync",
    "backfill-phase",
];

/// What a command did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandResult {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The tenant stream's seq after the command: the next `expected_seq`.
    pub seq: u64,
    /// The global position of the stream's last event.
    pub position: u64,
    /// Types of the events the command appended; empty when it wrote nothing.
    pub appended: Vec<String>,
    /// The tenant after the command.
    pub state: TenantView,
    /// `complete-onboarding` only: true when onboarding had already completed before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was_already_complete: Option<bool>,
    /// `complete-onboarding` only: when onboarding first completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// `issue-api-key` only: the generated key, shown in this response only (never stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// `issue-api-key` only: whether `api_key` is in this response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_revealed: Option<bool>,
    /// A note for a person, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Runs an onboarding command against the tenant's stream.
///
/// The body holds the command's fields, plus an optional `expected_seq` (or send
/// `If-Match: "<seq>"`): with one, a stale seq is a 409 `conflict`; without, the server decides
/// again on the latest state when another writer gets in first.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/commands/{name}",
    tag = "commands",
    request_body(content = Option<CommandBody>, description = "The command's fields; `{}` or empty for commands without fields"),
    params(
        ("id" = Uuid, Path, description = "The tenant id"),
        ("name" = String, Path, description = "The command", example = "acquire-lock"),
        ("If-Match" = Option<String>, Header, description = "The tenant's ETag (`\"<seq>\"`): the seq the caller decided on"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first response and write nothing"),
        ("X-Request-Id" = Option<String>, Header, description = "Recorded as `request_id`; generated when absent, echoed back"),
        ("X-Correlation-Id" = Option<String>, Header, description = "Recorded as `correlation_id`"),
        ("X-On-Behalf-Of" = Option<String>, Header, description = "The person or service an admin token acts for, recorded in `actor.on_behalf_of` (a tenant token sending it gets 403)"),
        ("X-Causation-Id" = Option<String>, Header, description = "Recorded as `causation_id`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Done (`appended` is empty when the effect was already recorded)", body = CommandResult, headers(("ETag" = String, description = "The stream's seq, quoted"))),
        (status = 400, description = "`invalid_tenant_id`, `invalid_json`, `invalid_if_match`, `conflicting_expected_seq` , `invalid_idempotency_key` or `invalid_header`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's token; an auditor token; a tenant token with X-On-Behalf-Of", body = ErrorBody),
        (status = 404, description = "`tenant_not_found` or `unknown_command`", body = ErrorBody),
        (status = 409, description = "`conflict` (with `expected_seq`, `current_seq`), `lock_held` (with `holder`, `expires_at`), `invalid_transition` (with `phase`) or `sync_not_pending`", body = ErrorBody),
        (status = 410, description = "`tenant_erased`: the tenant was erased; nothing personal can be written for it", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_body`, `invalid_command` or `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn run_command(
    caller: Writer,
    ctx: RequestContext,
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&id)?;
    caller.require_tenant(tenant)?;
    if !COMMANDS.contains(&name.as_str()) {
        let hint = match name.as_str() {
            "register-tenant" => "; register tenants with POST /v1/tenants",
            "erase-tenant" => "; erase tenants with POST /v1/tenants/{id}/erase",
            _ => "",
        };
        return Err(ApiError::new(
            Code::UnknownCommand,
            format!(
                "there is no command {}{hint}; the commands are {}",
                quote(&name),
                COMMANDS.join(", ")
            ),
        )
        .with("commands", COMMANDS));
    }
    let mut object = json_object(&body)?;
    let in_body = match object.remove("expected_seq") {
        None | Some(Value::Null) => None,
        Some(v) => Some(body_seq(&v).ok_or_else(|| {
            ApiError::new(
                Code::InvalidBody,
                "expected_seq must be a non-negative integer: the tenant's seq (or ETag) you decided on",
            )
        })?),
    };
    let expected = match (in_body, if_match(&headers)?) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::new(
                Code::ConflictingExpectedSeq,
                format!("expected_seq {a} in the body and If-Match {b} disagree; send one of them"),
            ));
        }
        (a, b) => a.or(b),
    };
    match object.get("command") {
        None => {}
        Some(Value::String(c)) if *c == name => {}
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidBody,
                "leave `command` out of the body: the URL names the command",
            ));
        }
    }
    let mut api_key = None;
    if name == "issue-api-key" {
        if object.contains_key("fingerprint") {
            return Err(ApiError::new(
                Code::InvalidBody,
                "leave `fingerprint` out: the server generates the API key and records only its fingerprint",
            ));
        }
        let key = format!("lk_{}", random_hex(32));
        let fingerprint = format!("sha256:{}", &hex(&sha256(key.as_bytes()))[..16]);
        object.insert("fingerprint".into(), Value::String(fingerprint));
        api_key = Some(key);
    }
    object.insert("command".into(), Value::String(name.clone()));
    let command: Command = from_object(object)?;
    let request = CommandRequest {
        command,
        expected: expected.map(Seq),
        metadata: ctx.metadata(&caller),
        idempotency: idempotency(&headers, "POST", uri.path(), &body)?,
    };
    let result = state.executor.execute(tenant, request).await;
    let executed = result?;

    let appended_type = |t: &str| executed.appended.iter().any(|a| a == t);
    let mut result = CommandResult {
        tenant_id: tenant,
        seq: executed.seq.0,
        position: executed.position.0,
        appended: executed.appended.clone(),
        state: TenantView::new(
            tenant,
            &executed.state,
            executed.seq.0,
            &state.config.policy,
        ),
        was_already_complete: None,
        completed_at: None,
        api_key: None,
        api_key_revealed: None,
        message: None,
    };
    match name.as_str() {
        "complete-onboarding" => {
            result.was_already_complete = Some(!appended_type("OnboardingCompleted"));
            result.completed_at = executed.state.completed_at;
        }
        "issue-api-key" => {
            let revealed = !executed.replayed && appended_type("ApiKeyIssued");
            result.api_key_revealed = Some(revealed);
            if revealed {
                result.api_key = api_key;
                result.message = Some("keep this API key secret: it is shown only now; only its fingerprint is recorded".into());
            } else if executed.replayed {
                result.message = Some("this retries an earlier request with the same Idempotency-Key: the API key was shown only in the first response and cannot be shown again".into());
            } else {
                result.message = Some(
                    "an API key was already issued for this tenant; this request issued none"
                        .into(),
                );
            }
        }
        _ => {}
    }
    let mut out = HeaderMap::new();
    out.insert(ETAG, header(&etag(executed.seq.0)));
    if executed.replayed {
        state.metrics.replay("command");
        out.insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    Ok((out, Json(result)).into_response())
}
