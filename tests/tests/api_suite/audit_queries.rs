//! `GET /v1/audit/events`: each filter against a history whose actors, on-behalf-of users,
//! correlation and request ids are known, compared with the same filter applied to the whole
//! log in memory; both orders, paging, a tenant token's scope and bad queries.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ledger_api::token_registry::Role;
use ledger_core::{Envelope, LogReader, ReadAll, Trail};
use ledger_projector::ProjectionStore;
use serde_json::{Value, json};

use super::audit::registry_token;
use super::client::{Api, Store};
use super::commands::cmd;

/// Microseconds since the epoch, the trail's precision.
fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The tenant an event belongs to: its `tenant-<id>` stream, or the tenant a slug claim names.
fn tenant_of(e: &Envelope) -> Option<String> {
    if e.stream.category() == "tenant" {
        return Some(e.stream.id().to_string());
    }
    (e.event_type == "SlugClaimed")
        .then(|| e.data["tenant_id"].as_str().map(str::to_string))
        .flatten()
}

/// The query parameters of a filter, and the same filter on one event.
type Filter = (String, Box<dyn Fn(&Envelope) -> bool>);

/// Every page of `query` (with `limit` per page), the positions in the order returned.
async fn positions(api: &Api, token: &str, query: &str, limit: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = format!("/v1/audit/events?{query}&limit={limit}");
        if let Some(c) = &cursor {
            uri += &format!("&cursor={c}");
        }
        let r = api.req("GET", uri).token(token).send().await;
        r.expect(200);
        let events = r.body["events"].as_array().unwrap();
        assert!(events.len() <= limit);
        out.extend(events.iter().map(|e| e["position"].as_u64().unwrap()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Each filter alone, two pairs and a time range answer exactly the events of the log that
/// pass them, oldest or newest first, in pages of any size; an auditor reads them all, a
/// tenant token only its tenant's.
pub async fn audit_filters(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = Api::with_projections(store.clone(), log, projections, Default::default());
    audit_filters_on(&api, store).await;
}

/// [`audit_filters`] through `api` (in process or a served one) over `store`; returns the
/// filters' query strings.
pub async fn audit_filters_on(api: &Api, store: Store) -> Vec<String> {
    let api = api.clone();
    let ops = registry_token(&api, "ops", Role::Admin).await;
    let auditor = registry_token(&api, "auditor", Role::Auditor).await;
    let r = api
        .req("POST", "/v1/tenants")
        .token(&ops)
        .header("x-on-behalf-of", "alice@example.com")
        .header("x-correlation-id", "corr-a")
        .header("x-request-id", "req-a1")
        .json(json!({"slug": "audit-a", "name": "Audit A"}))
        .send()
        .await;
    r.expect(201);
    let a: uuid::Uuid = r.body["tenant_id"].as_str().unwrap().parse().unwrap();
    let r = api
        .req("POST", format!("/v1/tenants/{a}/tokens"))
        .token(&ops)
        .json(json!({"name": "bot-a"}))
        .send()
        .await;
    r.expect(201);
    let bot = r.body["token"].as_str().unwrap().to_string();
    api.req("POST", cmd(a, "verify-payment"))
        .token(&bot)
        .header("x-correlation-id", "corr-a")
        .json(json!({"checkout_session_id": "cs_123"}))
        .send()
        .await
        .expect(200);
    let b = api.register("audit-b").await;
    let r = api
        .req("POST", cmd(b, "acquire-lock"))
        .admin()
        .header("x-correlation-id", "corr-b")
        .header("x-request-id", "req-b2")
        .json(json!({"holder": "tab-a"}))
        .send()
        .await;
    r.expect(200);
    let last = r.body["position"].as_u64().unwrap();

    let mut all: Vec<Envelope> = store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    all.sort_by_key(|e| (micros(e.recorded_at), e.position));
    let middle = all[all.len() / 2].recorded_at;
    let text = |v: Option<String>, want: &str| v.as_deref() == Some(want);
    let (a_id, b_id) = (a.to_string(), b.to_string());
    let filters: Vec<Filter> = vec![
        ("tenant=".to_string() + &a_id, {
            let a = a_id.clone();
            Box::new(move |e| tenant_of(e).as_deref() == Some(a.as_str()))
        }),
        (format!("stream=tenant-{b_id}"), {
            let s = format!("tenant-{b_id}");
            Box::new(move |e| e.stream.as_str() == s)
        }),
        (
            "category=slug".into(),
            Box::new(|e| e.stream.category() == "slug"),
        ),
        (
            "type=PaymentVerified".into(),
            Box::new(|e| e.event_type == "PaymentVerified"),
        ),
        (
            "actor=ops".into(),
            Box::new(move |e| text(Trail::of(&e.metadata).actor().map(str::to_string), "ops")),
        ),
        (
            "actor=bot-a".into(),
            Box::new(move |e| text(Trail::of(&e.metadata).token, "bot-a")),
        ),
        (
            "on_behalf_of=alice@example.com".into(),
            Box::new(move |e| text(Trail::of(&e.metadata).on_behalf_of, "alice@example.com")),
        ),
        (
            "correlation_id=corr-a".into(),
            Box::new(move |e| text(Trail::of(&e.metadata).correlation_id, "corr-a")),
        ),
        (
            "request_id=req-b2".into(),
            Box::new(move |e| text(Trail::of(&e.metadata).request_id, "req-b2")),
        ),
        (format!("tenant={a_id}&type=PaymentVerified"), {
            let a = a_id.clone();
            Box::new(move |e| {
                tenant_of(e).as_deref() == Some(a.as_str()) && e.event_type == "PaymentVerified"
            })
        }),
        (
            format!("actor=ops&from={}", middle.to_rfc3339()),
            Box::new(move |e| {
                text(Trail::of(&e.metadata).actor().map(str::to_string), "ops")
                    && micros(e.recorded_at) >= micros(middle)
            }),
        ),
        (
            format!("to={}", middle.to_rfc3339()),
            Box::new(move |e| micros(e.recorded_at) < micros(middle)),
        ),
        ("actor=nobody".into(), Box::new(|_| false)),
    ];
    for (query, keep) in &filters {
        let want: Vec<u64> = all
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.position.0)
            .collect();
        let query = format!(
            "{}&min_position={last}",
            query.replace('@', "%40").replace('+', "%2B")
        );
        for limit in [1, 2, 1000] {
            assert_eq!(
                positions(&api, &auditor, &query, limit).await,
                want,
                "{query} limit {limit}"
            );
        }
        let mut newest_first = want.clone();
        newest_first.reverse();
        assert_eq!(
            positions(&api, &ops, &format!("{query}&order=desc"), 2).await,
            newest_first,
            "{query} desc"
        );
    }
    assert!(
        filters.iter().take(9).all(|(_, keep)| all.iter().any(keep)),
        "every single filter matches some event"
    );

    // The events themselves, whole.
    let r = api
        .req(
            "GET",
            format!("/v1/audit/events?type=PaymentVerified&min_position={last}"),
        )
        .token(&auditor)
        .send()
        .await;
    let events = r.expect(200).body["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["data"]["checkout_session_id"], "cs_123");
    assert_eq!(events[0]["metadata"]["actor"]["token"], "bot-a");

    // A tenant token: its tenant's events only, whatever it asks.
    let mine: Vec<u64> = all
        .iter()
        .filter(|e| tenant_of(e).as_deref() == Some(a_id.as_str()))
        .map(|e| e.position.0)
        .collect();
    assert_eq!(positions(&api, &bot, "order=asc", 100).await, mine);
    assert!(
        positions(&api, &bot, &format!("tenant={b_id}"), 100)
            .await
            .is_empty()
    );
    assert!(
        positions(&api, &bot, &format!("stream=tenant-{b_id}"), 100)
            .await
            .is_empty()
    );
    assert_eq!(
        positions(&api, &bot, &format!("tenant={}", a_id.to_uppercase()), 100).await,
        mine
    );
    filters.into_iter().map(|(q, _)| q).collect()
}

/// Every event `query` finds (all pages, oldest first), as the admin.
pub async fn search(api: &Api, query: &str) -> Vec<u64> {
    positions(api, &api.admin, query, 1000).await
}

/// Malformed parameters are refused with 400 `invalid_query`, naming what is wrong.
pub async fn audit_bad_queries(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = Api::with_projections(store, log, projections, Default::default());
    let long = "x".repeat(300);
    for (query, says) in [
        ("order=sideways", "order"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("cursor=abc", "cursor"),
        ("cursor=1.2.3", "cursor"),
        ("limit=0", "limit"),
        ("actor=", "actor"),
        ("request_id=a%00b", "request_id"),
        (&format!("tenant={long}") as &str, "tenant"),
    ] {
        let r = api
            .req("GET", format!("/v1/audit/events?{query}"))
            .admin()
            .send()
            .await;
        r.expect_error(400, "invalid_query");
        let message = r.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{query}: {message}");
    }
    let r = api.req("GET", "/v1/audit/events").send().await;
    r.expect_error(401, "unauthorized");
    let r = api
        .req("GET", "/v1/audit/events?min_position=999999")
        .admin()
        .send()
        .await;
    r.expect_error(409, "position_not_reached");
    let r = api.req("GET", "/v1/audit/events").admin().send().await;
    r.expect(200);
    let body = r.body;
    assert_eq!(body["events"], json!([]));
    assert_eq!(body["next_cursor"], Value::Null);
}
