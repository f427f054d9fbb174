//! The read-model queries, projection status and rebuilds, and the live progress stream.

use std::sync::Arc;
use std::time::Duration;

use ledger_api::ApiConfig;
use ledger_core::LogReader;
use ledger_projector::ProjectionStore;
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{Api, Store};

fn api(store: Store, log: Arc<dyn LogReader>, projections: Arc<dyn ProjectionStore>) -> Api {
    Api::with_projections(store, log, projections, ApiConfig::default())
}

/// The position a write returned.
fn position(r: &super::client::Reply) -> u64 {
    r.body["position"]
        .as_u64()
        .expect("a write returns its position")
}

/// The ids of a list's items (`tenant_id`, or `tenant_id/target`).
fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| match i["target"].as_str() {
            Some(t) => format!("{}/{t}", i["tenant_id"].as_str().unwrap()),
            None => i["tenant_id"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// Every query reads its own writes with `min_position`, filters and pages.
pub async fn queries_read_own_writes(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = api(store, log, projections);
    let a = api.register("acme").await;
    let b = api.register("bolt").await;
    let c = api.register("corp").await;
    api.ok(a, "verify-payment", json!({"checkout_session_id": "cs_a"}))
        .await;
    api.ok(b, "acquire-lock", json!({"holder": "tab-1"})).await;
    api.ok(
        c,
        "record-sync-failure",
        json!({"target": "crm", "last_error": "timeout"}),
    )
    .await;
    let last = api
        .ok(
            c,
            "record-sync-failure",
            json!({"target": "billing", "last_error": "503"}),
        )
        .await;
    let p = position(&last);

    let r = api.get(format!("/v1/tenants?min_position={p}")).await;
    r.expect(200);
    let mut all = vec![a.to_string(), b.to_string(), c.to_string()];
    all.sort();
    assert_eq!(ids(&r.body), all);
    assert_eq!(r.body["next_cursor"], Value::Null);
    let item = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tenant_id"] == a.to_string())
        .unwrap();
    assert_eq!(item["slug"], "acme");
    assert_eq!(item["phase"], "PAYMENT_VERIFIED");
    assert!(item["verifying_payment_at"].is_string());
    assert_eq!(item["creating_organization_at"], Value::Null);

    let r = api
        .get(format!(
            "/v1/tenants?phase=PAYMENT_VERIFIED&min_position={p}"
        ))
        .await;
    assert_eq!(ids(&r.expect(200).body), [a.to_string()]);
    let r = api.get("/v1/tenants?phase=not_started").await;
    assert_eq!(ids(&r.expect(200).body).len(), 2);
    api.get("/v1/tenants?phase=DONE")
        .await
        .expect_error(400, "invalid_query");

    // Pages of two, then the rest.
    let first = api.get("/v1/tenants?limit=2").await;
    first.expect(200);
    assert_eq!(ids(&first.body), all[..2]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let second = api
        .get(format!("/v1/tenants?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second.expect(200).body), all[2..]);
    assert_eq!(second.body["next_cursor"], Value::Null);
    api.get("/v1/tenants?limit=0")
        .await
        .expect_error(400, "invalid_query");
    api.get("/v1/tenants?cursor=xyz")
        .await
        .expect_error(400, "invalid_query");

    let r = api
        .get(format!("/v1/locks?active=true&min_position={p}"))
        .await;
    r.expect(200);
    assert_eq!(ids(&r.body), [b.to_string()]);
    assert_eq!(r.body["items"][0]["holder"], "tab-1");
    assert_eq!(r.body["items"][0]["active"], true);
    let released = api
        .ok(
            b,
            "release-lock",
            json!({"holder": "tab-1", "reason": "done"}),
        )
        .await;
    let r = api
        .get(format!(
            "/v1/locks?active=true&min_position={}",
            position(&released)
        ))
        .await;
    assert!(ids(&r.expect(200).body).is_empty());
    let r = api.get("/v1/locks").await;
    assert_eq!(r.expect(200).body["items"][0]["release_reason"], "done");

    let r = api
        .get(format!(
            "/v1/pending-syncs?status=pending_sync&min_position={p}"
        ))
        .await;
    r.expect(200);
    assert_eq!(ids(&r.body), [format!("{c}/billing"), format!("{c}/crm")]);
    assert_eq!(r.body["items"][1]["last_error"], "timeout");
    let synced = api
        .ok(c, "record-sync-success", json!({"target": "crm"}))
        .await;
    let r = api
        .get(format!(
            "/v1/pending-syncs?status=synced&min_position={}",
            position(&synced)
        ))
        .await;
    assert_eq!(ids(&r.expect(200).body), [format!("{c}/crm")]);
    let page = api.get("/v1/pending-syncs?limit=1").await;
    let cursor = page.expect(200).body["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let rest = api.get(format!("/v1/pending-syncs?cursor={cursor}")).await;
    assert_eq!(ids(&rest.expect(200).body), [format!("{c}/crm")]);
    api.get("/v1/pending-syncs?status=stuck")
        .await
        .expect_error(400, "invalid_query");
}

/// A tenant token lists only its own tenant; projection status is for the admin.
pub async fn tenant_tokens_see_their_tenant(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = api(store, log, projections);
    let a = api.register("alpha").await;
    let b = api.register("beta").await;
    let last = api.ok(b, "acquire-lock", json!({"holder": "job"})).await;
    let token = api.tenant_token(a).await;
    let r = api
        .req(
            "GET",
            format!("/v1/tenants?min_position={}", position(&last)),
        )
        .token(&token)
        .send()
        .await;
    assert_eq!(ids(&r.expect(200).body), [a.to_string()]);
    let r = api.req("GET", "/v1/locks").token(&token).send().await;
    assert!(ids(&r.expect(200).body).is_empty());
    let r = api
        .req("GET", format!("/v1/locks?min_position={}", position(&last)))
        .admin()
        .send()
        .await;
    assert_eq!(ids(&r.expect(200).body), [b.to_string()]);
    api.req("GET", "/v1/projections")
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
    api.req("POST", "/v1/projections/tenant_phase/rebuild")
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
    api.req("GET", "/v1/tenants")
        .send()
        .await
        .expect_error(401, "unauthorized");
}

/// `/v1/projections` reports each projection; an online rebuild swaps in the same rows.
pub async fn status_and_online_rebuild(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = api(store, log, projections);
    let mut last = 0;
    for slug in ["one", "two", "three"] {
        let t = api.register(slug).await;
        last = position(
            &api.ok(t, "verify-payment", json!({"checkout_session_id": "cs"}))
                .await,
        );
    }
    let before = api.get(format!("/v1/tenants?min_position={last}")).await;
    before.expect(200);
    let r = api.get("/v1/projections").await;
    r.expect(200);
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tenant_phase",
            "onboarding_locks",
            "pending_syncs",
            "onboarding_funnel",
            "audit_trail"
        ]
    );
    let phase = &r.body["items"][0];
    assert_eq!(phase["version"], 1);
    assert!(phase["checkpoint"].as_u64().unwrap() > 0);
    assert!(["live", "catching_up"].contains(&phase["state"].as_str().unwrap()));

    let r = api
        .req("POST", "/v1/projections/tenant_phase/rebuild")
        .admin()
        .send()
        .await;
    r.expect(202);
    assert_eq!(r.body["status_url"], "/v1/projections/tenant_phase");
    assert_eq!(r.header("location"), Some("/v1/projections/tenant_phase"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = api.get("/v1/projections/tenant_phase").await;
        s.expect(200);
        if s.body["rebuild"].is_null() {
            break;
        }
        assert!(s.body["rebuild"]["error"].is_null(), "{}", s.text);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuild did not finish: {}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = api.get(format!("/v1/tenants?min_position={last}")).await;
    assert_eq!(after.expect(200).body, before.body);
    api.req("POST", "/v1/projections/nope/rebuild")
        .admin()
        .send()
        .await
        .expect_error(404, "unknown_projection");
    api.get("/v1/projections/nope")
        .await
        .expect_error(404, "unknown_projection");
}

/// A `min_position` beyond the log is refused at once (409 `position_not_reached`, with the
/// log's head); 0 waits for nothing; a position the projection does not reach in time is 503
/// `projection_behind`.
pub async fn projection_behind(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let config = ApiConfig {
        projection_wait: Duration::from_secs(20),
        ..ApiConfig::default()
    };
    let api = Api::with_projections(store.clone(), log.clone(), projections.clone(), config);
    let t = api.register("late").await;
    let p = position(&api.ok(t, "acquire-lock", json!({"holder": "x"})).await);
    let started = std::time::Instant::now();
    let r = api
        .get(format!("/v1/locks?min_position={}", p + 1000))
        .await;
    r.expect_error(409, "position_not_reached");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after {:?}, not at once",
        started.elapsed()
    );
    assert_eq!(r.body["min_position"], p + 1000);
    assert!(r.body["head"].as_u64().unwrap() >= p, "{}", r.text);
    api.get("/v1/tenants?min_position=0").await.expect(200);
    api.get(format!("/v1/locks?min_position={}", u64::MAX))
        .await
        .expect_error(400, "invalid_query");
    // Nothing applies the log here: a position in it is waited for, then 503.
    let config = ApiConfig {
        projection_wait: Duration::from_millis(200),
        ..ApiConfig::default()
    };
    let idle = ledger_projector::Projector::new(log, projections, ledger_read_models::catalog());
    let state = ledger_api::AppState::new(store.clone(), super::client::ADMIN, config)
        .with_projections(idle);
    let behind = Api::from_router(ledger_api::app(state), store);
    let r = behind.get(format!("/v1/locks?min_position={p}")).await;
    if r.status.as_u16() != 200 {
        r.expect_error(503, "projection_behind");
        assert!(r.body["checkpoint"].is_u64());
    }
}

/// A query with the position a write of this client just returned is never refused as
/// beyond the log, however soon it follows the write.
pub async fn own_writes_are_never_refused(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = api(store, log, projections);
    let t = api.register("soon").await;
    for i in 0..20 {
        let failure = json!({"target": format!("crm-{i}"), "last_error": "timeout"});
        let p = position(&api.ok(t, "record-sync-failure", failure).await);
        for path in ["/v1/tenants", "/v1/locks", "/v1/pending-syncs"] {
            api.get(format!("{path}?min_position={p}"))
                .await
                .expect(200);
        }
    }
}

/// `/metrics` shows each projection's checkpoint, lag, state and the build.
pub async fn projection_metrics(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = api(store, log, projections);
    let t = api.register("gauged").await;
    let p = position(&api.ok(t, "acquire-lock", json!({"holder": "x"})).await);
    for path in ["/v1/tenants", "/v1/locks", "/v1/pending-syncs"] {
        api.get(format!("{path}?min_position={p}"))
            .await
            .expect(200);
    }
    let text = api.get("/metrics").await.text;
    for line in [
        format!("ledger_projection_checkpoint{{projection=\"onboarding_locks\"}} {p}"),
        "ledger_projection_lag_events{projection=\"tenant_phase\"} 0".to_string(),
        "ledger_projection_lag_seconds{projection=\"pending_syncs\"} 0".to_string(),
        "ledger_projection_state{projection=\"tenant_phase\",state=\"live\"} 1".to_string(),
        "ledger_projection_state{projection=\"tenant_phase\",state=\"rebuilding\"} 0".to_string(),
        "# TYPE ledger_projection_rebuild_done_events gauge".to_string(),
        "ledger_build_info{version=".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
}

/// Without projections the queries answer 503 `projections_unavailable`.
pub async fn projections_unavailable(store: Store) {
    let api = Api::new(store);
    for path in [
        "/v1/tenants",
        "/v1/locks",
        "/v1/pending-syncs",
        "/v1/projections",
    ] {
        api.get(path)
            .await
            .expect_error(503, "projections_unavailable");
    }
}

/// The SSE events of a progress stream: (event name, data).
fn sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                }
                if let Some(d) = line.strip_prefix("data:") {
                    data = serde_json::from_str(d.trim()).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

/// The progress stream sends each stage as it completes and closes after completion; a step
/// failure closes it too.
pub async fn progress_stream(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = api(store, log, projections);
    let t = api.register("streamed").await;
    api.ok(t, "verify-payment", json!({"checkout_session_id": "cs"}))
        .await;
    let listening = {
        let api = api.clone();
        tokio::spawn(async move { api.get(format!("/v1/tenants/{t}/progress")).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    for command in [
        "create-organization",
        "provision-workspace",
        "issue-api-key",
        "complete-onboarding",
    ] {
        api.ok(t, command, json!({})).await;
    }
    let r = tokio::time::timeout(Duration::from_secs(30), listening)
        .await
        .expect("the progress stream closes after completion")
        .unwrap();
    r.expect(200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse(&r.text);
    let stages: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "stage")
        .map(|(_, d)| d["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "verifying_payment",
            "creating_organization",
            "setting_up_workspace",
            "generating_api_key",
            "finalizing"
        ]
    );
    assert_eq!(events.last().unwrap().0, "completed");
    assert_eq!(events[4].1["index"], 5);

    // A failed step closes the stream with `failed`.
    let f = api.register("failing").await;
    let listening = {
        let api = api.clone();
        tokio::spawn(async move { api.get(format!("/v1/tenants/{f}/progress")).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    api.ok(
        f,
        "record-step-failure",
        json!({"stage": "verifying_payment", "code": "card_declined"}),
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(30), listening)
        .await
        .expect("the progress stream closes after a failure")
        .unwrap();
    let events = sse(&r.expect(200).text);
    assert_eq!(events.len(), 1, "{}", r.text);
    assert_eq!(events[0].0, "failed");
    assert_eq!(events[0].1["code"], "card_declined");

    api.get(format!("/v1/tenants/{}/progress", Uuid::now_v7()))
        .await
        .expect_error(404, "tenant_not_found");
}

/// `GET /v1/funnel` counts each tenant once per step: a re-completion adds nothing, a
/// backfilled completion counts as backfilled, not as a completion (admin only).
pub async fn funnel_counts_once(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = api(store, log, projections);
    let a = api.register("funnel-a").await;
    let b = api.register("funnel-b").await;
    api.register("funnel-c").await;
    api.ok(a, "verify-payment", json!({"checkout_session_id": "cs_f"}))
        .await;
    for command in [
        "create-organization",
        "provision-workspace",
        "issue-api-key",
        "complete-onboarding",
        "complete-onboarding",
    ] {
        api.ok(a, command, json!({})).await;
    }
    let last = api
        .ok(b, "backfill-phase", json!({"phase": "COMPLETED"}))
        .await;
    let r = api
        .get(format!("/v1/funnel?min_position={}", position(&last)))
        .await;
    r.expect(200);
    let days = r.body["items"].as_array().unwrap();
    assert!(!days.is_empty() && days.len() <= 2, "{}", r.text);
    let total = |column: &str| -> u64 { days.iter().map(|d| d[column].as_u64().unwrap()).sum() };
    assert_eq!(total("registrations"), 3, "{}", r.text);
    assert_eq!(total("reached_payment_verified"), 1);
    assert_eq!(total("reached_api_key_issued"), 1);
    assert_eq!(total("completions"), 1, "{}", r.text);
    assert_eq!(total("backfilled"), 1);
    assert_eq!(total("completed_within_1h"), 1);
    assert_eq!(r.body["next_cursor"], Value::Null);
    let day = days[0]["day"].as_str().unwrap().to_string();
    let one = api
        .get(format!("/v1/funnel?from={day}&to={day}&limit=1"))
        .await;
    one.expect(200);
    assert_eq!(one.body["items"][0]["day"], day.as_str());
    let later = api.get("/v1/funnel?from=2999-01-01").await;
    later.expect(200);
    assert_eq!(later.body["items"], json!([]));
    api.get("/v1/funnel?from=yesterday")
        .await
        .expect_error(400, "invalid_query");
    let token = api.tenant_token(a).await;
    api.req("GET", "/v1/funnel")
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
}
