//! Who may read what, and who did what: auditor tokens read everything and write nothing,
//! every appended event names the token that acted (and on whose behalf).

use ledger_api::token_registry::{self, Role};
use serde_json::json;

use super::client::{Api, Store};
use super::commands::cmd;

/// Issues a registry token named `name` with `role` straight into the store (what
/// `ledger token issue` does) and returns it.
pub async fn registry_token(api: &Api, name: &str, role: Role) -> String {
    token_registry::issue(api.store.as_ref(), name, role, json!({"actor": "test"}))
        .await
        .expect("the token is issued")
        .token
}

/// A value for a path parameter of the OpenAPI document.
fn path_value(param: &str, tenant: &str) -> String {
    match param {
        "stream" => format!("tenant-{tenant}"),
        "name" => "tenant_phase".to_string(),
        _ => tenant.to_string(),
    }
}

/// An auditor token is refused (403 `forbidden`, nothing written) on every operation of the
/// OpenAPI document that is not a GET, whatever its body; it reads a tenant, its streams
/// and admin-only reads.
pub async fn auditor_never_writes(store: Store) {
    let api = Api::new(store);
    let auditor = registry_token(&api, "auditor-1", Role::Auditor).await;
    let t = api.register("audited").await;
    let tenant = t.to_string();
    let doc = api.req("GET", "/openapi.json").send().await.body;
    let before = api.log_len().await;
    let mut walked = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("an item").keys() {
            if !["post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let mut uri = path.clone();
            while let Some(start) = uri.find('{') {
                let end = start + uri[start..].find('}').expect("a closed parameter");
                let value = path_value(&uri[start + 1..end], &tenant);
                uri.replace_range(start..=end, &value);
            }
            for body in [
                json!({}),
                json!({"expected_seq": "any", "events": [{"type": "X", "data": {}}]}),
            ] {
                api.req(&method.to_uppercase(), &uri)
                    .token(&auditor)
                    .json(body)
                    .send()
                    .await
                    .expect_error(403, "forbidden");
            }
            walked.push(format!("{method} {path}"));
        }
    }
    for write in [
        "post /v1/tenants",
        "post /v1/tenants/{id}/tokens",
        "post /v1/tenants/{id}/commands/acquire-lock",
        "post /v1/streams/{stream}/events",
        "post /v1/projections/{name}/rebuild",
    ] {
        assert!(
            walked.iter().any(|w| w == write),
            "{write} not walked: {walked:?}"
        );
    }
    assert_eq!(api.log_len().await, before, "an auditor wrote");

    for uri in [
        format!("/v1/tenants/{t}"),
        format!("/v1/streams/tenant-{t}/events"),
        "/v1/streams/slug-audited/events".to_string(),
    ] {
        api.req("GET", uri).token(&auditor).send().await.expect(200);
    }
    // Admin-only reads are the auditor's too (here without read models: 503, not 403).
    api.req("GET", "/v1/projections")
        .token(&auditor)
        .send()
        .await
        .expect_error(503, "projections_unavailable");
    // A revoked auditor token reads nothing.
    token_registry::revoke(api.store.as_ref(), "auditor-1", json!({"actor": "test"}))
        .await
        .unwrap();
    let fresh = Api::new(api.store.clone());
    fresh
        .req("GET", format!("/v1/tenants/{t}"))
        .token(&auditor)
        .send()
        .await
        .expect_error(401, "unauthorized");
}

/// The auditor reads every tenant's events in the global log.
pub async fn auditor_reads_the_log(store: ledger_tests::Store) {
    let api = Api::with_log(store.clone(), store);
    let auditor = registry_token(&api, "auditor-log", Role::Auditor).await;
    let a = api.register("log-audit-a").await;
    let b = api.register("log-audit-b").await;
    let r = api
        .req("GET", "/v1/events?category=tenant&limit=1000")
        .token(&auditor)
        .send()
        .await;
    r.expect(200);
    let streams: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream"].as_str().unwrap())
        .collect();
    assert!(
        streams.contains(&format!("tenant-{a}").as_str()),
        "{streams:?}"
    );
    assert!(
        streams.contains(&format!("tenant-{b}").as_str()),
        "{streams:?}"
    );
}

/// Every appended event records the token that acted, `{role, token, token_id, tenant?,
/// on_behalf_of?}`; `X-On-Behalf-Of` is checked and only an admin token may send it.
pub async fn metadata_names_the_token(store: Store) {
    let api = Api::new(store);
    let ops = registry_token(&api, "ops", Role::Admin).await;
    let ops_id = token_registry::list(api.store.as_ref())
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "ops")
        .unwrap()
        .token_id;
    let r = api
        .req("POST", "/v1/tenants")
        .token(&ops)
        .header("x-on-behalf-of", "alice@example.com")
        .json(json!({"slug": "on-behalf", "name": "On Behalf Ltd"}))
        .send()
        .await;
    r.expect(201);
    let t: uuid::Uuid = r.body["tenant_id"].as_str().unwrap().parse().unwrap();
    let events = api.events(&format!("tenant-{t}")).await;
    assert_eq!(
        events[0].metadata["actor"],
        json!({"role": "admin", "token": "ops", "token_id": ops_id, "on_behalf_of": "alice@example.com"})
    );
    // The slug claim, appended in the same request, records the same actor.
    let claim = api.events("slug-on-behalf").await;
    assert_eq!(claim[0].metadata["actor"], events[0].metadata["actor"]);

    // A named tenant token.
    let r = api
        .req("POST", format!("/v1/tenants/{t}/tokens"))
        .token(&ops)
        .json(json!({"name": "ops-bot"}))
        .send()
        .await;
    r.expect(201);
    assert_eq!(r.body["name"], "ops-bot");
    let bot = r.body["token"].as_str().unwrap().to_string();
    let bot_id = r.body["token_id"].clone();
    api.req("POST", cmd(t, "verify-payment"))
        .token(&bot)
        .json(json!({"checkout_session_id": "cs_123"}))
        .send()
        .await
        .expect(200);
    let events = api.events(&format!("tenant-{t}")).await;
    assert_eq!(
        events[1].metadata["actor"],
        json!({"role": "tenant", "token": "ops-bot", "token_id": bot_id, "tenant": t})
    );
    // The token's own event names the admin token that issued it.
    let issued = api.events(&format!("tenanttoken-{t}")).await;
    assert_eq!(issued[0].metadata["actor"]["token"], "ops");
    assert_eq!(issued[0].data["name"], "ops-bot");

    // A tenant token acts for its tenant only: X-On-Behalf-Of is refused, nothing written.
    let before = api.log_len().await;
    api.req("POST", cmd(t, "acquire-lock"))
        .token(&bot)
        .header("x-on-behalf-of", "mallory")
        .json(json!({"holder": "tab"}))
        .send()
        .await
        .expect_error(403, "forbidden");
    let long = "x".repeat(ledger_api::MAX_ON_BEHALF_OF_LEN + 1);
    for bad in ["", "   ", long.as_str(), "tab\there"] {
        api.req("POST", cmd(t, "acquire-lock"))
            .token(&ops)
            .header("x-on-behalf-of", bad)
            .json(json!({"holder": "tab"}))
            .send()
            .await
            .expect_error(400, "invalid_header");
    }
    for bad in [
        json!({"name": "two words"}),
        json!({"name": ""}),
        json!({"name": 7}),
    ] {
        api.req("POST", format!("/v1/tenants/{t}/tokens"))
            .token(&ops)
            .json(bad)
            .send()
            .await
            .expect_error(422, "invalid_body");
    }
    assert_eq!(api.log_len().await, before);

    // An unnamed tenant token is named after its id.
    let r = api
        .req("POST", format!("/v1/tenants/{t}/tokens"))
        .admin()
        .send()
        .await;
    r.expect(201);
    let id = r.body["token_id"].as_str().unwrap().replace('-', "");
    assert_eq!(r.body["name"], format!("token-{}", &id[id.len() - 8..]));
}
