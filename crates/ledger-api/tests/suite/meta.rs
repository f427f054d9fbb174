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
        ("/v1/tenants/{id}/commands/{name}", "post"),
        ("/v1/streams/{stream}/events", "post"),
        ("/v1/streams/{stream}/events", "get"),
        ("/v1/tenants", "get"),
        ("/v1/tenants/{id}/progress", "get"),
        ("/v1/locks", "get"),
        ("/v1/pending-syncs", "get"),
        ("/v1/projections", "get"),
        ("/v1/projections/{name}", "get"),
        ("/v1/projections/{name}/rebuild", "post"),
    ];
    for (path, method) in routes {
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
    assert_eq!(doc, &serde_json::to_value(ledger_api::openapi()).unwrap());
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
        "ledger_append_conflicts_total{category=\"tenant\"} 1",
        "ledger_append_conflicts_total{category=\"slug\"} 1",
        "ledger_idempotent_replays_total{kind=\"command\"} 1",
        "# TYPE ledger_append_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
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
