//! Personal fields sealed at rest and erased everywhere: the API with keys stores a tenant's
//! name, lock holders, checkout session, sync errors and the person a token acted for only as
//! ciphertext, answers them in plain text on every route, and after `POST
//! /v1/tenants/{id}/erase` answers `[erased]` on every route (also after a rebuild), refuses
//! the tenant's commands, keeps its slug claimed, and the chains still verify.

use std::sync::Arc;

use futures::TryStreamExt;
use ledger_core::chain::ChainScope;
use ledger_core::verify::ChainWalker;
use ledger_core::{EventStore, Seq, StreamName};
use ledger_tests::env::Env;
use serde_json::{Value, json};
use uuid::Uuid;

use super::audit::registry_token;
use super::client::Api;
use ledger_api::token_registry::Role;

/// The personal values of tenant A: none of them may be readable after its erasure.
pub(crate) const A_NAME: &str = "Zebulon Personal Ltd";
pub(crate) const A_PERSON: &str = "alice.private@example.com";
pub(crate) const A_SESSION: &str = "cs_private_4711";
pub(crate) const A_HOLDER: &str = "tab-private-a";
pub(crate) const A_ERROR: &str = "upstream refused card of A. Private";
/// Tenant B's: they stay readable.
pub(crate) const B_NAME: &str = "Bolt Open Ltd";
pub(crate) const B_PERSON: &str = "bob@example.com";
pub(crate) const B_HOLDER: &str = "tab-b";

/// The text of every answer, to search for plain values.
async fn everything(api: &Api, tenant: Uuid, last: u64) -> String {
    let stream = format!("tenant-{tenant}");
    let mut out = String::new();
    for uri in [
        format!("/v1/tenants/{tenant}"),
        format!("/v1/tenants/{tenant}?as_of=2999-01-01T00:00:00Z"),
        format!("/v1/tenants/{tenant}/timeline"),
        format!("/v1/streams/{stream}/events"),
        "/v1/events?limit=1000".to_string(),
        format!("/v1/tenants?min_position={last}"),
        format!("/v1/locks?min_position={last}"),
        format!("/v1/pending-syncs?min_position={last}"),
        format!("/v1/audit/events?tenant={tenant}&min_position={last}&limit=1000"),
    ] {
        let r = api.get(&uri).await;
        r.expect(200);
        out.push_str(&r.text);
        out.push('\n');
    }
    out
}

/// Registers a tenant on behalf of `person`.
async fn register(api: &Api, slug: &str, name: &str, person: &str) -> Uuid {
    let r = api
        .req("POST", "/v1/tenants")
        .admin()
        .header("x-on-behalf-of", person)
        .json(json!({"slug": slug, "name": name}))
        .send()
        .await;
    r.expect(201);
    Uuid::parse_str(r.body["tenant_id"].as_str().unwrap()).unwrap()
}

/// Runs a command on behalf of `person`; the reply's position.
async fn command(api: &Api, tenant: Uuid, name: &str, person: &str, body: Value) -> u64 {
    let r = api
        .req("POST", format!("/v1/tenants/{tenant}/commands/{name}"))
        .admin()
        .header("x-on-behalf-of", person)
        .json(body)
        .send()
        .await;
    r.expect(200);
    r.body["position"].as_u64().unwrap()
}

/// Tenants A and B with every personal field: (A, B, the last write's position).
pub(crate) async fn seed(api: &Api) -> (Uuid, Uuid) {
    let (a, b, _) = seeded(api).await;
    (a, b)
}

/// [`seed`], with the last write's position.
async fn seeded(api: &Api) -> (Uuid, Uuid, u64) {
    let api = api.clone();
    let a = register(&api, "zebulon", A_NAME, A_PERSON).await;
    let b = register(&api, "bolt", B_NAME, B_PERSON).await;
    let lock = json!({"holder": A_HOLDER});
    command(&api, a, "acquire-lock", A_PERSON, lock).await;
    let pay = json!({"checkout_session_id": A_SESSION, "holder": A_HOLDER});
    command(&api, a, "verify-payment", A_PERSON, pay).await;
    let fail = json!({"target": "crm", "last_error": A_ERROR});
    command(&api, a, "record-sync-failure", A_PERSON, fail).await;
    command(
        &api,
        b,
        "acquire-lock",
        B_PERSON,
        json!({"holder": B_HOLDER}),
    )
    .await;
    let last = command(
        &api,
        b,
        "record-sync-failure",
        B_PERSON,
        json!({"target": "crm", "last_error": "b timeout"}),
    )
    .await;
    (a, b, last)
}

/// Every tenant's personal fields, sealed at rest, open on every route until the tenant is
/// erased, `[erased]` on every route after.
pub async fn erasure_everywhere(env: Env) {
    let keys: Arc<dyn ledger_core::KeyStore> = env.store.clone();
    let api = Api::with_keys(env.events(), env.log.clone(), env.projections.clone(), keys);
    let (a, b, last) = seeded(&api).await;
    let secrets = [A_NAME, A_PERSON, A_SESSION, A_HOLDER, A_ERROR];

    // At rest, every personal value is ciphertext: in the tenant's stream and its slug claim.
    let mut stored = String::new();
    for name in [format!("tenant-{a}"), "slug-zebulon".to_string()] {
        let events: Vec<_> = env
            .store
            .read_stream(StreamName::parse(name).unwrap(), Seq(1))
            .try_collect()
            .await
            .unwrap();
        stored.push_str(&serde_json::to_string(&events).unwrap());
    }
    for secret in secrets {
        assert!(
            !stored.contains(secret),
            "{secret} is stored in plain text: {stored}"
        );
    }
    assert!(stored.contains("sealed:v1:"), "{stored}");

    // Every route answers them in plain text.
    let before = everything(&api, a, last).await;
    for secret in secrets {
        assert!(
            before.contains(secret),
            "{secret} is not answered before the erasure"
        );
    }
    // A conflict's missed events are opened too.
    let stale = api
        .req("POST", format!("/v1/tenants/{a}/commands/release-lock"))
        .admin()
        .json(json!({"holder": A_HOLDER, "reason": "done", "expected_seq": 1}))
        .send()
        .await;
    stale.expect_error(409, "conflict");
    assert!(stale.text.contains(A_HOLDER), "{}", stale.text);
    // The person a token acted for is found by the audit search, across tenants and in one.
    let auditor = registry_token(&api, "auditor", Role::Auditor).await;
    for query in [
        format!("on_behalf_of={A_PERSON}"),
        format!("on_behalf_of={A_PERSON}&tenant={a}"),
    ] {
        let found = api
            .req(
                "GET",
                format!("/v1/audit/events?{query}&min_position={last}"),
            )
            .token(&auditor)
            .send()
            .await;
        found.expect(200);
        let events = found.body["events"].as_array().unwrap();
        // Registration (tenant stream and slug claim) and three commands.
        assert_eq!(events.len(), 5, "{query}: {}", found.text);
    }

    // Only an admin erases.
    let tenant_token = api.tenant_token(a).await;
    for token in [auditor.as_str(), tenant_token.as_str()] {
        api.req("POST", format!("/v1/tenants/{a}/erase"))
            .token(token)
            .send()
            .await
            .expect_error(403, "forbidden");
    }
    api.req("POST", format!("/v1/tenants/{}/erase", Uuid::now_v7()))
        .admin()
        .send()
        .await
        .expect_error(404, "tenant_not_found");
    let erased = api
        .req("POST", format!("/v1/tenants/{a}/erase"))
        .admin()
        .send()
        .await;
    erased.expect(200);
    assert_eq!(erased.body["key_destroyed"], true, "{}", erased.text);
    assert_eq!(erased.body["was_already_erased"], false);
    let again = api
        .req("POST", format!("/v1/tenants/{a}/erase"))
        .admin()
        .json(json!({}))
        .send()
        .await;
    again.expect(200);
    assert_eq!(again.body["was_already_erased"], true, "{}", again.text);
    assert_eq!(again.body["key_destroyed"], false);
    assert_eq!(again.body["erased_at"], erased.body["erased_at"]);
    let last = erased.body["position"].as_u64().unwrap();

    // Every route answers `[erased]` for A, and still B's values.
    let after = everything(&api, a, last).await;
    for secret in secrets {
        assert!(
            !after.contains(secret),
            "{secret} is still answered: {after}"
        );
    }
    assert!(after.contains("[erased]"), "{after}");
    let tenant = api.get(format!("/v1/tenants/{a}")).await;
    assert_eq!(tenant.body["name"], "[erased]", "{}", tenant.text);
    assert_eq!(tenant.body["slug"], "zebulon");
    let others = everything(&api, b, last).await;
    for value in [B_NAME, B_PERSON, B_HOLDER] {
        assert!(others.contains(value), "{value} of B is no longer answered");
    }
    let search = api
        .req(
            "GET",
            format!("/v1/audit/events?on_behalf_of={A_PERSON}&min_position={last}"),
        )
        .token(&auditor)
        .send()
        .await;
    assert_eq!(search.body["events"], json!([]), "{}", search.text);

    // The tenant takes no more commands; its slug stays claimed.
    api.command(a, "acquire-lock", json!({"holder": "tab-new"}))
        .await
        .expect_error(410, "tenant_erased");
    api.req("POST", format!("/v1/streams/tenant-{a}/events"))
        .admin()
        .json(json!({"expected_seq": "any", "events": [{"type": "BackendSyncFailed", "data": {"target": "x", "attempts": 1, "last_error": "new private text", "at": "2026-01-01T00:00:00Z"}}]}))
        .send()
        .await
        .expect_error(410, "tenant_erased");
    api.req("POST", "/v1/tenants")
        .admin()
        .json(json!({"slug": "zebulon", "name": "Someone Else"}))
        .send()
        .await
        .expect_error(409, "slug_taken");

    // A rebuilt read model holds ciphertext only, so it reads erased too.
    let projector = env.projector(7);
    let names = ledger_read_models::catalog().names();
    projector.rebuild(&names, &mut |_| {}).await.unwrap();
    let rebuilt = everything(&api, a, last).await;
    for secret in secrets {
        assert!(
            !rebuilt.contains(secret),
            "{secret} is back after a rebuild"
        );
    }

    // The chains, over the ciphertext, still verify.
    let chains: Vec<_> = env
        .store
        .chains(ChainScope::default())
        .try_collect()
        .await
        .unwrap();
    let mut walker = ChainWalker::new(true);
    let mut breaks: Vec<_> = chains.into_iter().flat_map(|e| walker.push(e)).collect();
    breaks.extend(walker.finish());
    assert!(breaks.is_empty(), "{breaks:?}");
}

/// A live subscriber that started before an erasure gets `TenantErased`; one that starts after
/// it gets the tenant's earlier events erased.
pub async fn live_subscribers_see_the_erasure(env: Env) {
    let keys: Arc<dyn ledger_core::KeyStore> = env.store.clone();
    let api = Api::with_keys(env.events(), env.log.clone(), env.projections.clone(), keys);
    // Subscribed first, so the server's shared tail reads every event as it is written.
    let mut first = live(&api).await;
    let (a, _b, _) = seeded(&api).await;
    let before = api.log_len().await;
    let seen = take(&mut first, before).await;
    assert!(seen.contains(A_NAME), "the live log opens personal fields");
    api.req("POST", format!("/v1/tenants/{a}/erase"))
        .admin()
        .send()
        .await
        .expect(200);
    let erasure = take(&mut first, 1).await;
    assert!(erasure.contains("TenantErased"), "{erasure}");
    let mut second = live(&api).await;
    let replayed = take(&mut second, before + 1).await;
    for secret in [A_NAME, A_PERSON, A_SESSION, A_HOLDER, A_ERROR] {
        assert!(
            !replayed.contains(secret),
            "{secret} is sent after the erasure"
        );
    }
    assert!(replayed.contains("[erased]") && replayed.contains(B_NAME));
}

/// The live log from its start, as NDJSON.
async fn live(api: &Api) -> super::client::Live {
    let live = api
        .req("GET", "/v1/events/live")
        .admin()
        .header("accept", "application/x-ndjson")
        .open()
        .await;
    assert_eq!(live.status.as_u16(), 200);
    live
}

/// The next `n` events of a live stream, as one text.
async fn take(live: &mut super::client::Live, n: usize) -> String {
    let mut out = String::new();
    for _ in 0..n {
        let event = live.ndjson().await.expect("the live stream ended early");
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out
}
