//! The OpenAPI document's frame (info, security, tags) and the documented command bodies.
//!
//! The paths themselves come from the `#[utoipa::path]` annotations of the handlers, collected
//! by the router in [`crate::app`], so the document lists exactly the routes that are served.

use ledger_core::{Limits, StreamName};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::auth::MAX_ON_BEHALF_OF_LEN;
use crate::input::{IF_MATCH_PATTERN, MAX_HEADER_ID_LEN, MAX_POSITION};
use crate::state::ApiConfig;
use crate::views::StageSchema;
use ledger_projector::subscription::{
    CATEGORY_PATTERN, MAX_MEMBERS, NAME_PATTERN as SUBSCRIPTION_PATTERN,
};
use ledger_read_models::PhaseSchema;

/// The document's frame; [`crate::app`] adds every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Onboarding ledger",
        description = "HTTP command API of the onboarding ledger: register tenants, run onboarding commands, append to and read streams.\n\nEvery error is `{\"error\": code, \"message\": text, ...}` with a stable snake_case code. Authenticate with `Authorization: Bearer <token>`: the admin token, or a tenant token from `POST /v1/tenants/{id}/tokens` that reaches only its tenant."
    ),
    modifiers(&BearerAuth),
    components(schemas(CommandBody)),
    tags(
        (name = "tenants", description = "Registering tenants, reading their onboarding, issuing their tokens"),
        (name = "commands", description = "Onboarding commands, decided against the tenant's stream"),
        (name = "queries", description = "Read models (projections), paged; `min_position` waits for a write to be applied"),
        (name = "projections", description = "Status and online rebuilds of the read models"),
        (name = "streams", description = "Appending to and reading any stream, for writers with their own aggregates"),
        (name = "log", description = "The global log for programs and auditors: pages after a cursor"),
        (name = "subscriptions", description = "Durable named subscriptions and consumer groups for projection jobs in any language"),
        (name = "health", description = "Liveness and readiness"),
        (name = "meta", description = "Metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token, or a tenant token (`lt_...`) that reaches only its tenant",
                    ))
                    .build(),
            ),
        );
    }
}

/// The body of `POST /v1/tenants/{id}/commands/{name}`: the fields of the named command, plus
/// an optional `expected_seq`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum CommandBody {
    /// `verify-payment`.
    VerifyPayment(VerifyPaymentBody),
    /// `acquire-lock`.
    AcquireLock(AcquireLockBody),
    /// `release-lock`.
    ReleaseLock(ReleaseLockBody),
    /// `create-organization`, `provision-workspace`, `issue-api-key`, `complete-onboarding`.
    Step(StepBody),
    /// `record-step-failure`.
    RecordStepFailure(RecordStepFailureBody),
    /// `record-sync-failure`.
    RecordSyncFailure(RecordSyncFailureBody),
    /// `record-sync-retry`, `record-sync-success`.
    Sync(SyncBody),
    /// `abandon-sync`.
    AbandonSync(AbandonSyncBody),
    /// `backfill-phase`.
    BackfillPhase(BackfillPhaseBody),
}

/// `verify-payment`: record a paid checkout.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct VerifyPaymentBody {
    /// The payment provider's checkout session.
    checkout_session_id: String,
    /// The caller, checked against the onboarding lock.
    holder: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `acquire-lock`: take or renew the onboarding lock.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct AcquireLockBody {
    /// Who takes it (a tab, a job).
    holder: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `release-lock`: give the lock up.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReleaseLockBody {
    /// Who holds it.
    holder: String,
    /// Why (default `released`).
    reason: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `create-organization`, `provision-workspace`, `issue-api-key` (the server generates the key
/// and returns it once) and `complete-onboarding`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct StepBody {
    /// The caller, checked against the onboarding lock.
    holder: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `record-step-failure`: a stage failed and may be retried.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct RecordStepFailureBody {
    /// The stage that failed.
    stage: StageSchema,
    /// A machine-readable failure code.
    code: String,
    /// The caller, checked against the onboarding lock.
    holder: Option<String>,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `record-sync-failure`: a downstream sync failed and awaits compensation.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct RecordSyncFailureBody {
    /// The downstream system.
    target: String,
    /// The error text.
    last_error: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `record-sync-retry` and `record-sync-success`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct SyncBody {
    /// The downstream system.
    target: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `abandon-sync`: give up on a failed sync.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct AbandonSyncBody {
    /// The downstream system.
    target: String,
    /// Why.
    reason: String,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// `backfill-phase`: record a phase reached outside the normal flow.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct BackfillPhaseBody {
    /// The phase the tenant is known to have reached.
    phase: PhaseSchema,
    /// The tenant's seq the caller decided on.
    expected_seq: Option<u64>,
}

/// What a slug must match (the domain's rule: 2 to 63 of `a-z0-9-`, no hyphen at either end).
const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$";

/// What a text field the domain requires must match somewhere: a character that is not
/// white space (the characters Rust's `char::is_whitespace` trims).
const NOT_BLANK: &str =
    "[^\\t-\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]";

/// What an event type must match: no control character (`char::is_control`).
const NO_CONTROL: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// Longest event type, in characters.
const MAX_EVENT_TYPE_LEN: usize = 200;

/// Longest text field of a command, in characters.
const MAX_FIELD_LEN: usize = 1000;

/// The generic command route, documented once per command.
const COMMAND_ROUTE: &str = "/v1/tenants/{id}/commands/{name}";

/// The body schema of each command.
const COMMAND_BODIES: [(&str, &str); 13] = [
    ("verify-payment", "VerifyPaymentBody"),
    ("acquire-lock", "AcquireLockBody"),
    ("release-lock", "ReleaseLockBody"),
    ("create-organization", "StepBody"),
    ("provision-workspace", "StepBody"),
    ("issue-api-key", "StepBody"),
    ("complete-onboarding", "StepBody"),
    ("record-step-failure", "RecordStepFailureBody"),
    ("record-sync-failure", "RecordSyncFailureBody"),
    ("record-sync-retry", "SyncBody"),
    ("record-sync-success", "SyncBody"),
    ("abandon-sync", "AbandonSyncBody"),
    ("backfill-phase", "BackfillPhaseBody"),
];

/// Makes the generated document say exactly what the server accepts where the annotations
/// cannot: limits from the constants the checks use, header, path and field patterns, the
/// values a query accepts, bodies that may be absent but are never `null`, and one operation
/// per command with that command's body.
pub(crate) fn contract(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    let phases = case_insensitive(&doc["components"]["schemas"]["Phase"]["enum"]);
    amend_operations(&mut doc, &ApiConfig::default(), &phases);
    amend_schemas(&mut doc["components"]["schemas"]);
    split_commands(&mut doc);
    doc
}

/// Exact parameter schemas, and request bodies that may be absent but are never `null`.
fn amend_operations(doc: &mut Value, config: &ApiConfig, phases: &str) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let params = op.get_mut("parameters").and_then(Value::as_array_mut);
            for param in params.into_iter().flatten() {
                let place = param["in"].as_str().unwrap_or_default().to_string();
                let name = param["name"].as_str().unwrap_or_default().to_string();
                if let Some(schema) = param_schema(path, &place, &name, config, phases) {
                    param["schema"] = schema;
                }
            }
            let contents = op
                .get_mut("requestBody")
                .and_then(|b| b.get_mut("content"))
                .and_then(Value::as_object_mut);
            for (_, content) in contents.into_iter().flatten() {
                let schema = &mut content["schema"];
                let not_null: Vec<Value> = schema["oneOf"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["type"] != "null")
                    .cloned()
                    .collect();
                if let [only] = not_null.as_slice() {
                    *schema = only.clone();
                }
            }
        }
    }
}

/// The rules the domain and the store check on body fields.
fn amend_schemas(schemas: &mut Value) {
    let text =
        json!({"type": "string", "minLength": 1, "maxLength": MAX_FIELD_LEN, "pattern": NOT_BLANK});
    for (schema, field) in [
        ("RegisterTenant", "name"),
        ("VerifyPaymentBody", "checkout_session_id"),
        ("AcquireLockBody", "holder"),
        ("ReleaseLockBody", "holder"),
        ("RecordStepFailureBody", "code"),
        ("RecordSyncFailureBody", "target"),
        ("RecordSyncFailureBody", "last_error"),
        ("SyncBody", "target"),
        ("AbandonSyncBody", "target"),
        ("AbandonSyncBody", "reason"),
    ] {
        merge(&mut schemas[schema]["properties"][field], &text);
    }
    for schema in ["VerifyPaymentBody", "StepBody", "RecordStepFailureBody"] {
        merge(
            &mut schemas[schema]["properties"]["holder"],
            &json!({"pattern": NOT_BLANK}),
        );
    }
    merge(
        &mut schemas["IssueToken"]["properties"]["name"],
        &json!({"pattern": crate::token_registry::NAME_PATTERN}),
    );
    merge(
        &mut schemas["RegisterTenant"]["properties"]["slug"],
        &json!({"pattern": SLUG_PATTERN}),
    );
    merge(
        &mut schemas["AppendEvents"]["properties"]["events"],
        &json!({"minItems": 1, "maxItems": Limits::default().max_batch_events}),
    );
    let batch = json!({"minItems": 1, "maxItems": Limits::default().max_batch_events});
    merge(&mut schemas["StreamEvents"]["properties"]["events"], &batch);
    merge(
        &mut schemas["StreamEvents"]["properties"]["stream"],
        &json!({"pattern": StreamName::PATTERN}),
    );
    merge(
        &mut schemas["MultiAppend"]["properties"]["appends"],
        &json!({"minItems": 1, "maxItems": 64}),
    );
    let cursor = json!({"pattern": CURSOR_PATTERN});
    let member = json!({"minimum": 0, "maximum": MAX_MEMBERS - 1});
    for schema in ["AckInput", "AckBody"] {
        merge(&mut schemas[schema]["properties"]["cursor"], &cursor);
        merge(&mut schemas[schema]["properties"]["member"], &member);
    }
    merge(&mut schemas["AckInput"]["properties"]["after"], &cursor);
    merge(
        &mut schemas["AckInput"]["properties"]["subscription"],
        &json!({"pattern": SUBSCRIPTION_PATTERN}),
    );
    let definition = &mut schemas["Definition"]["properties"];
    merge(
        &mut definition["categories"],
        &json!({"maxItems": 64, "items": {"type": "string", "pattern": CATEGORY_PATTERN}}),
    );
    merge(
        &mut definition["types"],
        &json!({"maxItems": 64, "items": {"type": "string", "minLength": 1}}),
    );
    merge(
        &mut definition["members"],
        &json!({"minimum": 1, "maximum": MAX_MEMBERS}),
    );
    let event = &mut schemas["EventInput"]["properties"];
    merge(
        &mut event["type"],
        &json!({"minLength": 1, "maxLength": MAX_EVENT_TYPE_LEN, "pattern": NO_CONTROL}),
    );
    event["data"] = json!({"description": event["data"]["description"]});
}

/// The generic command route as one operation per command, each with its own body.
fn split_commands(doc: &mut Value) {
    let Some(generic) = doc["paths"]
        .as_object_mut()
        .and_then(|p| p.remove(COMMAND_ROUTE))
    else {
        return;
    };
    let schemas = doc["components"]["schemas"].clone();
    for (name, body) in COMMAND_BODIES {
        let item = command_item(&generic, name, &schemas[body]);
        doc["paths"][COMMAND_ROUTE.replace("{name}", name)] = item;
    }
}

/// A log cursor: 32 hex digits.
const CURSOR_PATTERN: &str = "^[0-9a-fA-F]{32}$";

/// A comma-separated list of 1 to 64 names, none empty.
const NAME_LIST_PATTERN: &str = "^[^,]+(,[^,]+){0,63}$";

/// The exact schema of a parameter, where the annotations do not give it.
fn param_schema(
    path: &str,
    place: &str,
    name: &str,
    config: &ApiConfig,
    phases: &str,
) -> Option<Value> {
    let header_id = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_HEADER_ID_LEN,
        "pattern": format!("^[!-~]{{1,{MAX_HEADER_ID_LEN}}}$"),
    });
    let audit = path.starts_with("/v1/audit");
    Some(match (place, name) {
        ("query", "from" | "to") if audit => json!({"type": "string", "format": "date-time"}),
        ("query", "cursor") if audit => {
            json!({"type": "string", "pattern": "^-?[0-9]{1,18}\\.[0-9]{1,18}$"})
        }
        ("query", "order") if audit => json!({"type": "string", "enum": ["asc", "desc"]}),
        (
            "query",
            "tenant" | "stream" | "category" | "type" | "actor" | "on_behalf_of" | "correlation_id"
            | "request_id",
        ) if audit => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": crate::routes::audit::MAX_FILTER_LEN,
            "pattern": NO_CONTROL,
        }),
        ("header", "Idempotency-Key" | "X-Correlation-Id" | "X-Causation-Id") => header_id,
        ("header", "X-On-Behalf-Of") => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ON_BEHALF_OF_LEN,
            "pattern": "^[ -~]*[!-~][ -~]*$",
        }),
        ("header", "If-Match") => json!({"type": "string", "pattern": IF_MATCH_PATTERN}),
        ("header", "Last-Event-ID") => json!({"type": "string", "pattern": CURSOR_PATTERN}),
        ("header", _) => json!({"type": "string"}),
        ("query", "limit") => {
            json!({"type": "integer", "minimum": 1, "maximum": config.max_page_size})
        }
        ("query", "min_position" | "from_seq") => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_POSITION})
        }
        ("query", "cursor") if path.starts_with("/v1/events") => {
            json!({"type": "string", "pattern": CURSOR_PATTERN})
        }
        ("query", "cursor") => json!({"type": "string", "pattern": "^([0-9a-fA-F]{2})*$"}),
        ("query", "after") => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_POSITION})
        }
        ("query", "category" | "type") => json!({"type": "string", "pattern": NAME_LIST_PATTERN}),
        ("query", "seconds") => json!({"type": "integer", "minimum": 1, "maximum": 3600}),
        ("query", "member") => json!({"type": "integer", "minimum": 0, "maximum": MAX_MEMBERS - 1}),
        ("query", "members") => json!({"type": "integer", "minimum": 1, "maximum": MAX_MEMBERS}),
        ("path", "name") if path.starts_with("/v1/subscriptions") => {
            json!({"type": "string", "pattern": SUBSCRIPTION_PATTERN})
        }
        ("query", "from" | "to") => json!({"type": "string", "format": "date"}),
        ("query", "as_of") => json!({"type": "string", "format": "date-time"}),
        ("query", "phase") => json!({"type": "string", "pattern": phases}),
        ("query", "status") => json!({"$ref": "#/components/schemas/SyncStatus"}),
        ("path", "stream") => json!({"type": "string", "pattern": StreamName::PATTERN}),
        ("path", "name") if path.starts_with("/v1/projections") => {
            json!({"type": "string", "enum": ledger_read_models::catalog().names()})
        }
        _ => return None,
    })
}

/// The generic command operation for one command: its own path, without the `name`
/// parameter, with the command's body (required when it has required fields).
fn command_item(generic: &Value, name: &str, body: &Value) -> Value {
    let mut item = generic.clone();
    let op = &mut item["post"];
    if let Some(params) = op["parameters"].as_array_mut() {
        params.retain(|p| p["name"] != "name");
    }
    if let Some(id) = op["operationId"].as_str() {
        op["operationId"] = json!(format!("{id}_{}", name.replace('-', "_")));
    }
    let mut schema = body.clone();
    schema["properties"]["command"] = json!({"type": "string", "enum": [name], "description": "The URL's command, if sent at all."});
    schema["additionalProperties"] = json!(false);
    let required = schema["required"].as_array().is_some_and(|r| !r.is_empty());
    op["requestBody"] = json!({
        "description": op["requestBody"]["description"],
        "required": required,
        "content": {"application/json": {"schema": schema}},
    });
    item
}

/// A pattern matching any of `names` in any ASCII case (`phase=completed` is `COMPLETED`).
fn case_insensitive(names: &Value) -> String {
    let alternatives: Vec<String> = names
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|name| {
            name.chars()
                .map(|c| match (c.to_ascii_lowercase(), c.to_ascii_uppercase()) {
                    (l, u) if l != u => format!("[{l}{u}]"),
                    _ => c.to_string(),
                })
                .collect()
        })
        .collect();
    format!("^({})$", alternatives.join("|"))
}

/// Adds the fields of `extra` to the object `target`.
fn merge(target: &mut Value, extra: &Value) {
    if let (Some(target), Some(extra)) = (target.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
}
