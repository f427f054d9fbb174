//! Registering tenants and reading them.

use serde_json::json;
use uuid::Uuid;

use super::client::{Api, Store};

/// Registers a tenant, reads it back with its ETag, and gets 304 for an unchanged ETag.
pub async fn register_and_read(store: Store) {
    let api = Api::new(store);
    let r = api
        .req("POST", "/v1/tenants")
        .admin()
        .json(json!({"slug": "acme", "name": "Acme Ltd"}))
        .send()
        .await;
    r.expect(201);
    let id = r.body["tenant_id"].as_str().unwrap().to_string();
    assert_eq!(r.body["seq"], 1);
    assert!(r.body["position"].is_u64(), "{}", r.text);
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/tenants/{id}").as_str())
    );
    assert!(r.header("x-request-id").is_some());

    let g = api.get(format!("/v1/tenants/{id}")).await;
    g.expect(200);
    assert_eq!(g.header("etag"), Some("\"1\""));
    assert_eq!(g.body["tenant_id"], id.as_str());
    assert_eq!(g.body["slug"], "acme");
    assert_eq!(g.body["name"], "Acme Ltd");
    assert_eq!(g.body["phase"], "NOT_STARTED");
    assert_eq!(g.body["seq"], 1);
    assert!(g.body["lock"].is_null());
    assert!(g.body["completed_at"].is_null());
    let stages = g.body["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5);
    assert_eq!(stages[0]["stage"], "verifying_payment");
    assert_eq!(stages[0]["label"], "Verifying payment");
    assert!(stages.iter().all(|s| s["completed_at"].is_null()));

    let n = api
        .req("GET", format!("/v1/tenants/{id}"))
        .admin()
        .header("if-none-match", "\"1\"")
        .send()
        .await;
    assert_eq!(n.status.as_u16(), 304);
    assert_eq!(api.events("slug-acme").await.len(), 1);
    assert_eq!(api.events("slug-acme").await[0].event_type, "SlugClaimed");
}

/// A caller-chosen tenant id is used; registering it twice is `tenant_exists`.
pub async fn register_with_own_id(store: Store) {
    let api = Api::new(store);
    let id = Uuid::now_v7();
    let r = api
        .req("POST", "/v1/tenants")
        .admin()
        .json(json!({"slug": "own-id", "name": "Own", "tenant_id": id}))
        .send()
        .await;
    r.expect(201);
    assert_eq!(r.body["tenant_id"], id.to_string());
    let again = api
        .req("POST", "/v1/tenants")
        .admin()
        .json(json!({"slug": "other-slug", "name": "Own", "tenant_id": id}))
        .send()
        .await;
    again.expect_error(409, "tenant_exists");
    assert_eq!(api.seq("slug-other-slug").await, 0);
    assert_eq!(api.seq(&format!("tenant-{id}")).await, 1);
}

/// A slug belongs to one tenant: the second registration is `slug_taken` and writes nothing.
pub async fn slug_taken(store: Store) {
    let api = Api::new(store);
    api.register("taken").await;
    let before = api.log_len().await;
    let r = api
        .req("POST", "/v1/tenants")
        .admin()
        .json(json!({"slug": "taken", "name": "Second"}))
        .send()
        .await;
    r.expect_error(409, "slug_taken");
    assert_eq!(r.body["slug"], "taken");
    assert_eq!(api.log_len().await, before);
}

/// Malformed slugs and bodies are 422 and write nothing.
pub async fn invalid_registration(store: Store) {
    let api = Api::new(store);
    for (body, code) in [
        (json!({"slug": "Not A Slug", "name": "x"}), "invalid_slug"),
        (json!({"slug": "-edge", "name": "x"}), "invalid_slug"),
        (json!({"slug": "ok-slug"}), "invalid_body"),
        (json!({"slug": "ok-slug", "name": "  "}), "invalid_command"),
        (
            json!({"slug": "ok-slug", "name": "x", "plan": "pro"}),
            "invalid_body",
        ),
    ] {
        api.req("POST", "/v1/tenants")
            .admin()
            .json(body)
            .send()
            .await
            .expect_error(422, code);
    }
    assert_eq!(api.log_len().await, 0);
}

/// Unknown tenants are 404, malformed ids 400.
pub async fn tenant_not_found(store: Store) {
    let api = Api::new(store);
    api.get(format!("/v1/tenants/{}", Uuid::now_v7()))
        .await
        .expect_error(404, "tenant_not_found");
    api.get("/v1/tenants/not-a-uuid")
        .await
        .expect_error(400, "invalid_tenant_id");
}

/// A retried registration with the same Idempotency-Key and body answers the first response and
/// writes nothing; the same key with another body is `idempotency_key_reused`.
pub async fn register_idempotent(store: Store) {
    let api = Api::new(store);
    let send = |body: serde_json::Value| {
        api.req("POST", "/v1/tenants")
            .admin()
            .header("idempotency-key", "register-once")
            .json(body)
            .send()
    };
    let body = json!({"slug": "retry", "name": "Retry Ltd"});
    let first = send(body.clone()).await;
    first.expect(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = send(body).await;
    second.expect(201);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(api.log_len().await, 2);
    send(json!({"slug": "retry-2", "name": "Retry Ltd"}))
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(api.log_len().await, 2);
}
