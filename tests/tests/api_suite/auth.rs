//! Tokens: the admin token, tenant tokens and what each reaches.

use serde_json::json;
use uuid::Uuid;

use super::client::{Api, Store};
use super::commands::cmd;

/// A tenant token reaches its own tenant only: another tenant's resources are 403 and nothing
/// is written; admin-only routes are 403.
pub async fn tenant_token_isolation(store: Store) {
    let api = Api::new(store.clone());
    let a = api.register("tenant-a").await;
    let b = api.register("tenant-b").await;
    let token = api.tenant_token(a).await;
    assert!(token.starts_with("lt_"));

    api.req("GET", format!("/v1/tenants/{a}"))
        .token(&token)
        .send()
        .await
        .expect(200);
    api.req("GET", format!("/v1/tenants/{b}"))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
    let before = api.log_len().await;
    api.req("POST", cmd(b, "acquire-lock"))
        .token(&token)
        .json(json!({"holder": "intruder"}))
        .send()
        .await
        .expect_error(403, "forbidden");
    // Even a malformed body to another tenant is refused as forbidden, not parsed.
    api.req("POST", cmd(b, "acquire-lock"))
        .token(&token)
        .raw("{nope")
        .send()
        .await
        .expect_error(403, "forbidden");
    api.req("POST", "/v1/tenants")
        .token(&token)
        .json(json!({"slug": "sneaky", "name": "x"}))
        .send()
        .await
        .expect_error(403, "forbidden");
    api.req("POST", format!("/v1/tenants/{a}/tokens"))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
    api.req("POST", format!("/v1/streams/tenant-{b}/events"))
        .token(&token)
        .json(json!({"expected_seq": 1, "events": [{"type": "OrganizationCreated", "data": {"at": "2026-01-01T00:00:00Z"}}]}))
        .send()
        .await
        .expect_error(403, "forbidden");
    for stream in [
        format!("tenant-{b}"),
        "slug-tenant-a".to_string(),
        format!("tenanttoken-{a}"),
    ] {
        api.req("GET", format!("/v1/streams/{stream}/events"))
            .token(&token)
            .send()
            .await
            .expect_error(403, "forbidden");
    }
    assert_eq!(api.log_len().await, before);
    assert_eq!(api.seq(&format!("tenant-{b}")).await, 1);

    let r = api
        .req("POST", cmd(a, "acquire-lock"))
        .token(&token)
        .json(json!({"holder": "tab"}))
        .send()
        .await;
    r.expect(200);
    let events = api.events(&format!("tenant-{a}")).await;
    let actor = &events[1].metadata["actor"];
    assert_eq!(
        (&actor["role"], &actor["tenant"]),
        (&json!("tenant"), &json!(a))
    );
    assert!(
        actor["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("token-"))
    );
    let page = api
        .req("GET", format!("/v1/streams/tenant-{a}/events"))
        .token(&token)
        .send()
        .await;
    page.expect(200);
    assert_eq!(page.body["events"].as_array().unwrap().len(), 2);

    // Only the hash is stored.
    let issued = api.events(&format!("tenanttoken-{a}")).await;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].event_type, "TenantTokenIssued");
    assert_eq!(issued[0].data["sha256"].as_str().unwrap().len(), 64);
    let secret = token.rsplit('_').next().unwrap();
    assert!(!serde_json::to_string(&issued).unwrap().contains(secret));

    // Another server over the same database (an empty token cache) accepts the token too.
    let other = Api::new(store);
    other
        .req("GET", format!("/v1/tenants/{a}"))
        .token(&token)
        .send()
        .await
        .expect(200);
}

/// Missing, malformed and unknown tokens are 401 and write nothing.
pub async fn unauthorized(store: Store) {
    let api = Api::new(store);
    let a = api.register("auth-a").await;
    let token = api.tenant_token(a).await;
    let before = api.log_len().await;
    let forged_secret = format!("lt_{}_{}", a.simple(), "0".repeat(64));
    let unknown_tenant = format!("lt_{}_{}", Uuid::now_v7().simple(), "0".repeat(64));
    let truncated = token[..token.len() - 1].to_string();
    let headers: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Basic {}", api.admin)),
        Some("Bearer wrong".into()),
        Some(format!("Bearer {forged_secret}")),
        Some(format!("Bearer {unknown_tenant}")),
        Some(format!("Bearer {truncated}")),
    ];
    for header in headers {
        for (method, url) in [
            ("GET", format!("/v1/tenants/{a}")),
            ("POST", cmd(a, "acquire-lock")),
            ("POST", "/v1/tenants".to_string()),
            ("POST", "/v1/streams/order-1/events".to_string()),
            ("GET", "/v1/streams/order-1/events".to_string()),
        ] {
            let mut req = api.req(method, &url).json(json!({"holder": "x"}));
            if let Some(h) = &header {
                req = req.header("authorization", h.clone());
            }
            let r = req.send().await;
            r.expect_error(401, "unauthorized");
        }
    }
    assert_eq!(api.log_len().await, before);
    // Health, readiness, metrics and the OpenAPI document need no token.
    for url in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        api.req("GET", url).send().await.expect(200);
    }
}

/// Token requests: 404 for unknown tenants, 400 for bad ids, and idempotent retries that do not
/// show the token again.
pub async fn issue_tokens(store: Store) {
    let api = Api::new(store);
    let a = api.register("tokens").await;
    api.req("POST", format!("/v1/tenants/{}/tokens", Uuid::now_v7()))
        .admin()
        .send()
        .await
        .expect_error(404, "tenant_not_found");
    api.req("POST", "/v1/tenants/nope/tokens")
        .admin()
        .send()
        .await
        .expect_error(400, "invalid_tenant_id");
    api.req("POST", format!("/v1/tenants/{a}/tokens"))
        .admin()
        .json(json!({"scope": "all"}))
        .send()
        .await
        .expect_error(422, "invalid_body");
    let send = |body: &'static str| {
        api.req("POST", format!("/v1/tenants/{a}/tokens"))
            .admin()
            .header("idempotency-key", "token-1")
            .raw(body)
            .send()
    };
    let first = send("{}").await;
    first.expect(201);
    let token = first.body["token"].as_str().unwrap().to_string();
    assert_eq!(first.body["token_revealed"], true);
    let retry = send("{}").await;
    retry.expect(201);
    assert!(retry.body["token"].is_null());
    assert_eq!(retry.body["token_revealed"], false);
    assert_eq!(retry.body["token_id"], first.body["token_id"]);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    send("{ }")
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(api.events(&format!("tenanttoken-{a}")).await.len(), 1);
    // A second token works alongside the first.
    let second = api.tenant_token(a).await;
    for t in [&token, &second] {
        api.req("GET", format!("/v1/tenants/{a}"))
            .token(t)
            .send()
            .await
            .expect(200);
    }
}
