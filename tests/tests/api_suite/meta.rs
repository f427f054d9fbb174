//! Health, readiness, metrics, the OpenAPI document, and a database that fails.

use std::sync::Arc;

use futures::StreamExt;
use ledger_api::{ApiConfig, AppState, app};
use ledger_core::{
    AppendResult, BoxFuture, EventStore, EventStream, ExpectedSeq, NewEvent, ReadAll, Seq,
    StoreError, StreamAppend, StreamName,
};
use serde_json::json;
use uuid::Uuid;

use super::client::{ADMIN, Api, Store};
use super::commands::cmd;

/// `/healthz` and `/readyz` answer 200 on a working store.
pub async fn health(store: Store) {
    let api = Api::new(store);
    let r = api.req("GET", "/healthz").send().await;
    r.expect(200);
    assert_eq!(r.body, json!({"status": "ok"}));
    let r = api.req("GET", "/readyz").send().await;
    r.expect(200);
    assert_eq!(r.body, json!({"status": "ready"}));
}

/// `/openapi.json` documents every route with its methods, the bearer scheme and the bodies.
pub async fn openapi_document(store: Store) {
    let api = Api::new(store);
    let r = api.req("GET", "/openapi.json").send().await;
    r.expect(200);
    let doc = &r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/tenants", "post"),
        ("/v1/tenants/{id}", "get"),
        ("/v1/tenants/{id}/tokens", "post"),
        ("/v1/tenants/{id}/timeline", "get"),
        ("/v1/tenants/{id}/erase", "post"),
        ("/v1/streams/{stream}/events", "post"),
        ("/v1/streams/{stream}/events", "get"),
        ("/v1/streams/{stream}/head", "get"),
        ("/v1/events", "get"),
        ("/v1/events", "post"),
        ("/v1/subscriptions/{name}", "put"),
        ("/v1/subscriptions/{name}/events", "get"),
        ("/v1/subscriptions/{name}/ack", "post"),
        ("/v1/events/live", "get"),
        ("/v1/audit/events", "get"),
        ("/v1/tenants", "get"),
        ("/v1/tenants/{id}/progress", "get"),
        ("/v1/tenants/{id}/progress-link", "post"),
        ("/v1/locks", "get"),
        ("/v1/pending-syncs", "get"),
        ("/v1/funnel", "get"),
        ("/v1/projections", "get"),
        ("/v1/projections/{name}", "get"),
        ("/v1/projections/{name}/rebuild", "post"),
    ];
    let commands: Vec<String> = ledger_api::COMMANDS
        .iter()
        .map(|c| format!("/v1/tenants/{{id}}/commands/{c}"))
        .collect();
    let routes: Vec<(&str, &str)> = routes
        .into_iter()
        .chain(commands.iter().map(|c| (c.as_str(), "post")))
        .collect();
    for &(path, method) in &routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, routes.len(), "undocumented or extra operations");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "ErrorBody",
        "TenantView",
        "CommandBody",
        "CommandResult",
        "AppendEvents",
        "EventPage",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    let conflict = &doc["paths"]["/v1/streams/{stream}/events"]["post"]["responses"]["428"];
    assert!(conflict.is_object());
    assert_eq!(doc, &ledger_api::openapi());
}

/// The document says exactly what the server accepts: the limits, patterns and lengths it
/// checks, bodies that are never `null`, each command with its own body, the SSE stream
/// without a string schema, and a position beyond the log as a 409.
pub async fn openapi_contract(store: Store) {
    let api = Api::new(store);
    let doc = api.req("GET", "/openapi.json").send().await.body;
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"]
            .clone()
    };
    for path in [
        "/v1/tenants",
        "/v1/locks",
        "/v1/pending-syncs",
        "/v1/streams/{stream}/events",
    ] {
        let limit = param(path, "get", "limit");
        assert_eq!(
            (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
            (Some(1), Some(1000)),
            "{path}"
        );
    }
    assert_eq!(
        param("/v1/streams/{stream}/events", "post", "stream")["pattern"],
        ledger_core::StreamName::PATTERN
    );
    let key = param("/v1/tenants", "post", "Idempotency-Key");
    assert_eq!(
        (key["minLength"].as_u64(), key["maxLength"].as_u64()),
        (Some(1), Some(200))
    );
    assert_eq!(key["type"], "string", "a header is never null");
    let correlation = param(
        "/v1/tenants/{id}/commands/acquire-lock",
        "post",
        "X-Correlation-Id",
    );
    assert_eq!(correlation["minLength"], 1);
    let slug = &doc["components"]["schemas"]["RegisterTenant"]["properties"]["slug"];
    assert!(slug["pattern"].is_string());
    for (path, required) in [
        ("/v1/tenants/{id}/commands/acquire-lock", true),
        ("/v1/tenants/{id}/commands/complete-onboarding", false),
        ("/v1/tenants/{id}/tokens", false),
    ] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert_eq!(
            body["required"].as_bool().unwrap_or(false),
            required,
            "{path}"
        );
        let schema = &body["content"]["application/json"]["schema"];
        assert!(
            schema["oneOf"].is_null() && schema["type"] != "null",
            "{path}: a body is never null: {schema}"
        );
    }
    let acquire = &doc["paths"]["/v1/tenants/{id}/commands/acquire-lock"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert_eq!(acquire["properties"]["holder"]["minLength"], 1);
    assert_eq!(
        acquire["properties"]["command"]["enum"],
        json!(["acquire-lock"])
    );
    assert_eq!(acquire["additionalProperties"], false);
    let sse = &doc["paths"]["/v1/tenants/{id}/progress"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert!(sse["schema"].is_null(), "{sse}");
    for path in ["/v1/tenants", "/v1/locks", "/v1/pending-syncs"] {
        let responses = &doc["paths"][path]["get"]["responses"];
        assert!(
            responses["409"]["description"]
                .as_str()
                .unwrap()
                .contains("position_not_reached")
        );
        let phase_or_status = param(path, "get", "min_position");
        assert_eq!(phase_or_status["maximum"].as_u64(), Some(i64::MAX as u64));
    }
    assert!(
        param("/v1/tenants", "get", "phase")["pattern"]
            .as_str()
            .unwrap()
            .contains("[cC][oO][mM][pP][lL][eE][tT][eE][dD]")
    );
}

/// `/metrics` counts requests by route template and status, append latency, conflicts (stale
/// callers and races alike) and replays.
pub async fn metrics(store: Store) {
    let api = Api::new(store);
    let t = api.register("metered").await;
    api.command(t, "acquire-lock", json!({"holder": "a", "expected_seq": 0}))
        .await
        .expect_error(409, "conflict");
    for _ in 0..2 {
        api.req("POST", cmd(t, "acquire-lock"))
            .admin()
            .header("idempotency-key", "m-1")
            .json(json!({"holder": "a"}))
            .send()
            .await
            .expect(200);
    }
    api.req("POST", format!("/v1/streams/tenant-{t}/events"))
        .admin()
        .json(json!({"expected_seq": 1, "events": [{"type": "OrganizationCreated", "data": {"at": "2026-01-01T00:00:00Z"}}]}))
        .send()
        .await
        .expect_error(409, "conflict");
    api.req("POST", "/v1/tenants")
        .admin()
        .json(json!({"slug": "metered", "name": "again"}))
        .send()
        .await
        .expect_error(409, "slug_taken");
    api.get("/nope").await.expect(404);
    api.req("FOOBAR", "/v1/tenants")
        .admin()
        .send()
        .await
        .expect(405);
    let r = api.req("GET", "/metrics").send().await;
    r.expect(200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = &r.text;
    for line in [
        "ledger_http_requests_total{route=\"/v1/tenants\",method=\"POST\",status=\"201\"} 1",
        "ledger_http_requests_total{route=\"/v1/tenants\",method=\"POST\",status=\"409\"} 1",
        "ledger_http_requests_total{route=\"/v1/tenants/{id}/commands/{name}\",method=\"POST\",status=\"409\"} 1",
        "ledger_http_requests_total{route=\"/v1/tenants/{id}/commands/{name}\",method=\"POST\",status=\"200\"} 2",
        "ledger_http_requests_total{route=\"/v1/streams/{stream}/events\",method=\"POST\",status=\"409\"} 1",
        "ledger_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "ledger_append_duration_seconds_count{kind=\"append_multi\"} 2",
        "ledger_append_duration_seconds_count{kind=\"append\"} 2",
        // The stale expected seq of the command (refused before any append) and the stale
        // append to the stream (refused by the store), each counted once.
        "ledger_append_conflicts_total{category=\"tenant\"} 2",
        "method=\"other\",status=\"405\"} 1",
        "ledger_build_info{version=",
        "ledger_append_conflicts_total{category=\"slug\"} 1",
        "ledger_idempotent_replays_total{kind=\"command\"} 1",
        "# TYPE ledger_append_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        !text.contains("FOOBAR"),
        "a client's method became a label:\n{text}"
    );
}

/// With a metrics token configured, `/metrics` needs it or the admin token.
pub async fn metrics_token(store: Store) {
    let config = ApiConfig {
        metrics_token: Some("scrape-token".into()),
        ..ApiConfig::default()
    };
    let api = Api::with_config(store, config);
    let t = api.register("scraped").await;
    let tenant = api.tenant_token(t).await;
    api.req("GET", "/metrics")
        .send()
        .await
        .expect_error(401, "unauthorized");
    api.req("GET", "/metrics")
        .token("not-it")
        .send()
        .await
        .expect_error(401, "unauthorized");
    api.req("GET", "/metrics")
        .token(&tenant)
        .send()
        .await
        .expect_error(403, "forbidden");
    let r = api
        .req("GET", "/metrics")
        .token("scrape-token")
        .send()
        .await;
    r.expect(200);
    assert!(r.text.contains("ledger_http_requests_total"));
    api.get("/metrics").await.expect(200);
    // Without a token configured it stays open.
    let open = Api::new(api.store.clone());
    open.req("GET", "/metrics").send().await.expect(200);
}

/// A store whose every operation fails with one error.
#[derive(Clone)]
pub struct FailingStore {
    make: fn() -> StoreError,
}

impl EventStore for FailingStore {
    fn append(
        &self,
        _: StreamName,
        _: ExpectedSeq,
        _: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        let e = (self.make)();
        Box::pin(async move { Err(e) })
    }
    fn append_multi(
        &self,
        _: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        let e = (self.make)();
        Box::pin(async move { Err(e) })
    }
    fn stream_seq(&self, _: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        let e = (self.make)();
        Box::pin(async move { Err(e) })
    }
    fn read_stream(&self, _: StreamName, _: Seq) -> EventStream {
        futures::stream::iter([Err((self.make)())]).boxed()
    }
    fn read_all(&self, _: ReadAll) -> EventStream {
        futures::stream::iter([Err((self.make)())]).boxed()
    }
}

/// A database that is down is 503 `unavailable` ("try again in a moment"); a database error is
/// 500 `internal`; neither shows driver or SQL text; readiness says which.
pub async fn failing_database() {
    let leaks = ["os error", "relation", "SELECT", "password", "pg_", "sqlx"];
    type Case = (fn() -> StoreError, u16, &'static str);
    let cases: [Case; 3] = [
        (
            || StoreError::unavailable("connection refused (os error 111) to pg_hba password"),
            503,
            "unavailable",
        ),
        (
            || StoreError::backend("relation \"events\" does not exist in SELECT * FROM sqlx"),
            500,
            "internal",
        ),
        (
            || StoreError::SchemaMismatch {
                found: 1,
                needed: 2,
            },
            503,
            "schema_mismatch",
        ),
    ];
    for (make, status, code) in cases {
        let store: Store = Arc::new(FailingStore { make });
        let api = Api::new(store.clone());
        let t = Uuid::now_v7();
        let replies = [
            api.get(format!("/v1/tenants/{t}")).await,
            api.command(t, "acquire-lock", json!({"holder": "a"})).await,
            api.req("POST", "/v1/tenants")
                .admin()
                .json(json!({"slug": "down", "name": "x"}))
                .send()
                .await,
            api.req("POST", "/v1/streams/a-1/events")
                .admin()
                .json(json!({"expected_seq": "any", "events": [{"type": "A", "data": {}}]}))
                .send()
                .await,
            api.get("/v1/streams/a-1/events").await,
        ];
        for r in &replies {
            r.expect_error(status, code);
            if status == 503 {
                assert_eq!(r.header("retry-after"), Some("1"), "{}", r.text);
            }
            for leak in leaks {
                assert!(!r.text.contains(leak), "{leak:?} leaked: {}", r.text);
            }
        }
        if code == "unavailable" {
            assert!(
                replies[0].body["message"]
                    .as_str()
                    .unwrap()
                    .contains("try again in a moment")
            );
        }
        let ready = api.req("GET", "/readyz").send().await;
        ready.expect(503);
        assert_eq!(
            ready.code(),
            if code == "internal" {
                "not_ready"
            } else {
                code
            }
        );
        api.req("GET", "/healthz").send().await.expect(200);
        // A tenant token cannot be checked either: the answer is the database's state, not 401.
        let token = format!("lt_{}_{}", t.simple(), "0".repeat(64));
        api.req("GET", format!("/v1/tenants/{t}"))
            .token(&token)
            .send()
            .await
            .expect_error(status, code);
    }
}

/// A readiness probe given by the caller (e.g. a backend's schema check) decides `/readyz`.
pub async fn custom_ready_check(store: Store) {
    let state = AppState::new(store.clone(), ADMIN, ApiConfig::default()).with_ready_check(
        Arc::new(|| {
            Box::pin(async {
                Err(StoreError::SchemaMismatch {
                    found: 3,
                    needed: 2,
                })
            })
        }),
    );
    let router = app(state);
    let api = Api::from_router(router, store);
    let r = api.req("GET", "/readyz").send().await;
    r.expect_error(503, "schema_mismatch");
    assert!(r.body["message"].as_str().unwrap().contains("upgrade"));
}
