//! Onboarding commands over HTTP.

use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{Api, Store};

/// The URL of a command.
pub fn cmd(tenant: Uuid, name: &str) -> String {
    format!("/v1/tenants/{tenant}/commands/{name}")
}

/// Walks a tenant through every step; metadata, ETags and request ids along the way.
pub async fn onboarding_flow(store: Store) {
    let api = Api::new(store);
    let t = api.register("flow").await;
    let r = api
        .req("POST", cmd(t, "verify-payment"))
        .admin()
        .header("x-request-id", "req-1")
        .header("x-correlation-id", "corr-1")
        .header("x-causation-id", "cause-1")
        .json(json!({"checkout_session_id": "cs_1"}))
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.body["appended"], json!(["PaymentVerified"]));
    assert_eq!(r.body["tenant_id"], t.to_string());
    assert_eq!(r.body["seq"], 2);
    assert!(r.body["position"].is_u64());
    assert_eq!(r.body["state"]["phase"], "PAYMENT_VERIFIED");
    assert_eq!(r.header("x-request-id"), Some("req-1"));
    assert_eq!(r.header("etag"), Some("\"2\""));
    let events = api.events(&format!("tenant-{t}")).await;
    let meta = &events[1].metadata;
    assert_eq!(meta["actor"]["role"], "admin");
    assert_eq!(meta["actor"]["token"], "bootstrap");
    assert_eq!(meta["request_id"], "req-1");
    assert_eq!(meta["correlation_id"], "corr-1");
    assert_eq!(meta["causation_id"], "cause-1");
    // Without the header the request id is generated, recorded and echoed.
    let r = api.ok(t, "create-organization", json!({})).await;
    assert_eq!(r.body["state"]["phase"], "ORGANIZATION_CREATED");
    let generated = r.header("x-request-id").unwrap().to_string();
    let events = api.events(&format!("tenant-{t}")).await;
    assert_eq!(events[2].metadata["request_id"], generated.as_str());
    assert!(events[2].metadata.get("correlation_id").is_none());
    // An empty body is fine for a command without fields.
    let r = api
        .req("POST", cmd(t, "provision-workspace"))
        .admin()
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.body["state"]["phase"], "WORKSPACE_PROVISIONED");

    let r = api.ok(t, "issue-api-key", json!({})).await;
    let key = r.body["api_key"].as_str().unwrap().to_string();
    assert!(key.len() >= 32);
    assert_eq!(r.body["api_key_revealed"], true);
    assert_eq!(r.body["appended"], json!(["ApiKeyIssued"]));
    let fingerprint = r.body["state"]["api_key"]["fingerprint"].as_str().unwrap();
    assert!(!fingerprint.is_empty() && !fingerprint.contains(&key));
    let stored = serde_json::to_string(&api.events(&format!("tenant-{t}")).await).unwrap();
    assert!(!stored.contains(&key), "the key itself was stored");

    let done = api.ok(t, "complete-onboarding", json!({})).await;
    assert_eq!(done.body["was_already_complete"], false);
    assert_eq!(done.body["appended"], json!(["OnboardingCompleted"]));
    assert_eq!(done.body["state"]["phase"], "COMPLETED");
    let completed_at = done.body["completed_at"].clone();
    assert!(completed_at.is_string());
    let stages = done.body["state"]["stages"].as_array().unwrap();
    assert!(
        stages.iter().all(|s| s["completed_at"].is_string()),
        "{stages:?}"
    );

    let again = api.ok(t, "complete-onboarding", json!({})).await;
    assert_eq!(again.body["was_already_complete"], true);
    assert_eq!(again.body["completed_at"], completed_at);
    assert_eq!(again.body["appended"], json!([]));
    assert_eq!(again.body["seq"], done.body["seq"]);

    let key_again = api.ok(t, "issue-api-key", json!({})).await;
    assert!(key_again.body.get("api_key").is_none());
    assert_eq!(key_again.body["api_key_revealed"], false);
    assert_eq!(key_again.body["appended"], json!([]));

    let view = api.get(format!("/v1/tenants/{t}")).await;
    view.expect(200);
    assert_eq!(view.body["phase"], "COMPLETED");
    assert_eq!(view.body["completed_at"], completed_at);
    assert_eq!(view.body["seq"], 6);
}

fn appended(r: &super::client::Reply) -> Value {
    r.body["appended"].clone()
}

/// Every command of the catalog answers 200 with the events it appended (none when done already).
pub async fn every_command(store: Store) {
    let api = Api::new(store);
    let t = api.register("every").await;
    let r = api.ok(t, "acquire-lock", json!({"holder": "tab-a"})).await;
    assert_eq!(appended(&r), json!(["OnboardingLockAcquired"]));
    assert_eq!(r.body["state"]["lock"]["holder"], "tab-a");
    let r = api
        .ok(
            t,
            "verify-payment",
            json!({"checkout_session_id": "cs", "holder": "tab-a"}),
        )
        .await;
    assert_eq!(appended(&r), json!(["PaymentVerified"]));
    let r = api
        .ok(
            t,
            "release-lock",
            json!({"holder": "tab-a", "reason": "done"}),
        )
        .await;
    assert_eq!(appended(&r), json!(["OnboardingLockReleased"]));
    assert!(r.body["state"]["lock"]["released_at"].is_string());
    assert_eq!(r.body["state"]["lock"]["release_reason"], "done");
    let r = api.ok(t, "release-lock", json!({"holder": "tab-a"})).await;
    assert_eq!(appended(&r), json!([]));
    let r = api
        .ok(
            t,
            "record-step-failure",
            json!({"stage": "creating_organization", "code": "crm_down"}),
        )
        .await;
    assert_eq!(appended(&r), json!(["OnboardingStepFailed"]));
    assert_eq!(
        r.body["state"]["last_failure"]["stage"],
        "creating_organization"
    );
    let r = api
        .ok(
            t,
            "record-sync-failure",
            json!({"target": "crm", "last_error": "timeout"}),
        )
        .await;
    assert_eq!(appended(&r), json!(["BackendSyncFailed"]));
    assert_eq!(r.body["state"]["syncs"][0]["status"], "pending_sync");
    let r = api
        .ok(t, "record-sync-retry", json!({"target": "crm"}))
        .await;
    assert_eq!(appended(&r), json!(["BackendSyncRetried"]));
    assert_eq!(r.body["state"]["syncs"][0]["retry_count"], 1);
    let r = api
        .ok(t, "record-sync-success", json!({"target": "crm"}))
        .await;
    assert_eq!(appended(&r), json!(["BackendSynced"]));
    assert_eq!(r.body["state"]["syncs"][0]["status"], "synced");
    let r = api
        .ok(t, "record-sync-success", json!({"target": "crm"}))
        .await;
    assert_eq!(appended(&r), json!([]));
    api.ok(
        t,
        "record-sync-failure",
        json!({"target": "erp", "last_error": "500"}),
    )
    .await;
    let r = api
        .ok(
            t,
            "abandon-sync",
            json!({"target": "erp", "reason": "gave up"}),
        )
        .await;
    assert_eq!(appended(&r), json!(["BackendSyncAbandoned"]));
    let erp = r.body["state"]["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["target"] == "erp")
        .unwrap()
        .clone();
    assert_eq!(erp["status"], "failed");
    let r = api
        .ok(
            t,
            "backfill-phase",
            json!({"phase": "WORKSPACE_PROVISIONED"}),
        )
        .await;
    assert_eq!(appended(&r), json!(["OnboardingPhaseBackfilled"]));
    assert_eq!(r.body["state"]["phase"], "WORKSPACE_PROVISIONED");
    let r = api
        .ok(t, "backfill-phase", json!({"phase": "PAYMENT_VERIFIED"}))
        .await;
    assert_eq!(appended(&r), json!([]));
}

/// Another holder's active lock is `lock_held` with the holder and expiry.
pub async fn lock_held(store: Store) {
    let api = Api::new(store);
    let t = api.register("locked").await;
    api.ok(t, "acquire-lock", json!({"holder": "tab-a"})).await;
    let seq = api.seq(&format!("tenant-{t}")).await;
    let r = api
        .command(t, "acquire-lock", json!({"holder": "tab-b"}))
        .await;
    r.expect_error(409, "lock_held");
    assert_eq!(r.body["holder"], "tab-a");
    assert!(r.body["expires_at"].is_string());
    let r = api
        .command(
            t,
            "verify-payment",
            json!({"checkout_session_id": "cs", "holder": "tab-b"}),
        )
        .await;
    r.expect_error(409, "lock_held");
    assert_eq!(api.seq(&format!("tenant-{t}")).await, seq);
    api.ok(t, "release-lock", json!({"holder": "tab-a"})).await;
    api.ok(t, "acquire-lock", json!({"holder": "tab-b"})).await;
}

/// Steps out of order are `invalid_transition` with the phase; syncs that are not pending are
/// `sync_not_pending`.
pub async fn invalid_transition(store: Store) {
    let api = Api::new(store);
    let t = api.register("order").await;
    let r = api.command(t, "create-organization", json!({})).await;
    r.expect_error(409, "invalid_transition");
    assert_eq!(r.body["phase"], "NOT_STARTED");
    let r = api.command(t, "complete-onboarding", json!({})).await;
    r.expect_error(409, "invalid_transition");
    let r = api
        .command(t, "record-sync-retry", json!({"target": "crm"}))
        .await;
    r.expect_error(409, "sync_not_pending");
    assert_eq!(r.body["target"], "crm");
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 1);
}

/// The caller's expected seq (body or If-Match) is checked: stale is 409 with the current seq.
pub async fn expected_seq(store: Store) {
    let api = Api::new(store);
    let t = api.register("expect").await;
    let url = cmd(t, "verify-payment");
    let r = api
        .command(
            t,
            "verify-payment",
            json!({"checkout_session_id": "cs", "expected_seq": 0}),
        )
        .await;
    r.expect_error(409, "conflict");
    assert_eq!(r.body["expected_seq"], 0);
    assert_eq!(r.body["current_seq"], 1);
    let r = api
        .req("POST", &url)
        .admin()
        .header("if-match", "\"0\"")
        .json(json!({"checkout_session_id": "cs"}))
        .send()
        .await;
    r.expect_error(409, "conflict");
    assert_eq!(r.body["current_seq"], 1);
    let r = api
        .req("POST", &url)
        .admin()
        .header("if-match", "\"2\"")
        .json(json!({"checkout_session_id": "cs", "expected_seq": 1}))
        .send()
        .await;
    r.expect_error(400, "conflicting_expected_seq");
    let r = api
        .req("POST", &url)
        .admin()
        .header("if-match", "five")
        .json(json!({"checkout_session_id": "cs"}))
        .send()
        .await;
    r.expect_error(400, "invalid_if_match");
    api.command(
        t,
        "verify-payment",
        json!({"checkout_session_id": "cs", "expected_seq": "x"}),
    )
    .await
    .expect_error(422, "invalid_body");
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 1);
    let r = api
        .req("POST", &url)
        .admin()
        .header("if-match", "\"1\"")
        .json(json!({"checkout_session_id": "cs"}))
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.body["seq"], 2);
    let r = api
        .command(t, "create-organization", json!({"expected_seq": 2}))
        .await;
    r.expect(200);
    assert_eq!(r.body["seq"], 3);
}

/// Unknown tenants and commands are 404 with their codes.
pub async fn command_not_found(store: Store) {
    let api = Api::new(store);
    let t = api.register("known").await;
    api.command(Uuid::now_v7(), "acquire-lock", json!({"holder": "a"}))
        .await
        .expect_error(404, "tenant_not_found");
    let r = api.command(t, "fly-to-the-moon", json!({})).await;
    r.expect_error(404, "unknown_command");
    assert!(r.body["commands"].as_array().unwrap().len() == 13);
    api.command(t, "register-tenant", json!({"slug": "x", "name": "y"}))
        .await
        .expect_error(404, "unknown_command");
    assert_eq!(api.log_len().await, 2);
}

/// A retried command with the same Idempotency-Key and body answers the first response and
/// writes nothing, even after other commands; another body with the key is refused.
pub async fn idempotent_command(store: Store) {
    let api = Api::new(store);
    let t = api.register("idem").await;
    let send = |body: Value| {
        api.req("POST", cmd(t, "acquire-lock"))
            .admin()
            .header("idempotency-key", "lock-1")
            .json(body)
            .send()
    };
    let first = send(json!({"holder": "tab-a"})).await;
    first.expect(200);
    let second = send(json!({"holder": "tab-a"})).await;
    second.expect(200);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 2);
    api.ok(
        t,
        "verify-payment",
        json!({"checkout_session_id": "cs", "holder": "tab-a"}),
    )
    .await;
    let third = send(json!({"holder": "tab-a"})).await;
    third.expect(200);
    assert_eq!(third.body, first.body);
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 3);
    send(json!({"holder": "tab-b"}))
        .await
        .expect_error(422, "idempotency_key_reused");
    api.req("POST", cmd(t, "acquire-lock"))
        .admin()
        .header("idempotency-key", "x".repeat(300))
        .json(json!({"holder": "tab-a"}))
        .send()
        .await
        .expect_error(400, "invalid_idempotency_key");
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 3);
}

/// The server generates the API key; a retry cannot show it again and says so.
pub async fn issue_api_key_once(store: Store) {
    let api = Api::new(store);
    let t = api.register("keys").await;
    api.ok(t, "verify-payment", json!({"checkout_session_id": "cs"}))
        .await;
    api.ok(t, "create-organization", json!({})).await;
    api.ok(t, "provision-workspace", json!({})).await;
    api.command(t, "issue-api-key", json!({"fingerprint": "mine"}))
        .await
        .expect_error(422, "invalid_body");
    let send = || {
        api.req("POST", cmd(t, "issue-api-key"))
            .admin()
            .header("idempotency-key", "key-1")
            .json(json!({}))
            .send()
    };
    let first = send().await;
    first.expect(200);
    assert!(first.body["api_key"].is_string());
    assert_eq!(first.body["api_key_revealed"], true);
    let retry = send().await;
    retry.expect(200);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert!(retry.body.get("api_key").is_none());
    assert_eq!(retry.body["api_key_revealed"], false);
    assert!(
        retry.body["message"]
            .as_str()
            .unwrap()
            .contains("only in the first response")
    );
    assert_eq!(retry.body["appended"], json!(["ApiKeyIssued"]));
    assert_eq!(retry.body["seq"], first.body["seq"]);
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 5);
}

/// A 409 carries the events the writer missed (oldest first, at most 20, with
/// `missed_truncated`), for a stale If-Match on a command and a stale append alike.
pub async fn conflict_carries_missed(store: Store) {
    let api = Api::new(store);
    let t = api.register("missed").await;
    api.ok(t, "acquire-lock", json!({"holder": "a"})).await;
    let r = api
        .req("POST", cmd(t, "verify-payment"))
        .admin()
        .header("if-match", "\"1\"")
        .json(json!({"checkout_session_id": "cs", "holder": "a"}))
        .send()
        .await;
    r.expect_error(409, "conflict");
    assert_eq!(r.body["missed_truncated"], false);
    let missed = r.body["missed"].as_array().unwrap();
    assert_eq!(missed.len(), 1, "{}", r.text);
    assert_eq!(missed[0]["type"], "OnboardingLockAcquired");
    assert_eq!(missed[0]["seq"], 2);
    assert_eq!(missed[0]["data"]["holder"], "a");
    let stream = "order-missed";
    for seq in 0..25 {
        api.req("POST", format!("/v1/streams/{stream}/events"))
            .admin()
            .json(json!({"expected_seq": seq, "events": [{"type": "Noted", "data": {"n": seq}}]}))
            .send()
            .await
            .expect(200);
    }
    let r = api
        .req("POST", format!("/v1/streams/{stream}/events"))
        .admin()
        .json(json!({"expected_seq": 0, "events": [{"type": "Noted", "data": {}}]}))
        .send()
        .await;
    r.expect_error(409, "conflict");
    assert_eq!(r.body["current_seq"], 25);
    assert_eq!(r.body["missed_truncated"], true);
    let missed = r.body["missed"].as_array().unwrap();
    assert_eq!(missed.len(), ledger_core::MAX_REPORTED_MISSED);
    assert_eq!(missed[0]["seq"], 1);
    assert_eq!(missed[0]["data"], json!({"n": 0}));
}
