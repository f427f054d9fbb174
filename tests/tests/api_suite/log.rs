//! `GET /v1/events`: the global log over HTTP equals the store's, page by page after cursors,
//! with filters; a tenant token reads only its own streams; bad queries have their codes.

use futures::TryStreamExt;
use ledger_core::{Envelope, ReadAll};
use serde_json::{Value, json};

use super::client::{Api, Store};

/// Registers two tenants, runs a command and appends to a stream of another category: a log
/// of several categories and types.
pub async fn fill(api: &Api) -> (uuid::Uuid, uuid::Uuid) {
    let a = api.register("log-a").await;
    let b = api.register("log-b").await;
    api.ok(a, "acquire-lock", json!({"holder": "tab-a"})).await;
    api.ok(b, "verify-payment", json!({"checkout_session_id": "cs_1"}))
        .await;
    for i in 0..3 {
        api.req("POST", "/v1/streams/order-7/events")
            .admin()
            .json(json!({"expected_seq": i, "events": [{"type": "Placed", "data": {"i": i}}]}))
            .send()
            .await
            .expect(200);
    }
    (a, b)
}

/// Every event `GET /v1/events?<query>` gives with `token`, `limit` at a time, following
/// `next_cursor` until a page says it caught up.
pub async fn read_log(api: &Api, token: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = format!("/v1/events?limit={limit}");
        if !query.is_empty() {
            uri.push('&');
            uri.push_str(query);
        }
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let r = api.req("GET", uri).token(token).send().await;
        r.expect(200);
        let page = r.body["events"].as_array().unwrap().clone();
        assert!(page.len() <= limit);
        let next = r.body["next_cursor"].as_str().unwrap().to_string();
        if let Some(last) = page.last() {
            assert_eq!(last["cursor"], next.as_str());
        } else {
            assert_eq!(cursor.as_deref().unwrap_or(&"0".repeat(32)), next);
        }
        let caught_up = r.body["caught_up"].as_bool().unwrap();
        assert_eq!(caught_up, page.len() < limit);
        events.extend(page);
        cursor = Some(next);
        if caught_up {
            return events;
        }
    }
}

/// The envelope of an event of `GET /v1/events`, without its cursor.
pub fn envelope_of(event: &Value) -> Envelope {
    let mut e = event.clone();
    e.as_object_mut().unwrap().remove("cursor");
    serde_json::from_value(e).unwrap()
}

/// The store's log through `query`.
pub async fn store_log(api: &Api, query: ReadAll) -> Vec<Envelope> {
    api.store.read_all(query).try_collect().await.unwrap()
}

/// Panics unless the HTTP log of a [`fill`]ed store equals the store's with and without
/// filters, in pages of several sizes, with cursors that grow as text.
pub async fn log_equals_the_store(api: &Api) {
    let admin = api.admin.clone();
    for limit in [1, 4, 1000] {
        let http = read_log(api, &admin, "", limit).await;
        let cursors: Vec<&str> = http.iter().map(|e| e["cursor"].as_str().unwrap()).collect();
        assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
        let http: Vec<Envelope> = http.iter().map(envelope_of).collect();
        assert_eq!(
            http,
            store_log(api, ReadAll::from_start()).await,
            "pages of {limit}"
        );
    }
    let tenants = read_log(api, &admin, "category=tenant", 3).await;
    let want = store_log(api, ReadAll::from_start().category("tenant")).await;
    assert_eq!(tenants.iter().map(envelope_of).collect::<Vec<_>>(), want);
    let placed = read_log(api, &admin, "type=Placed", 2).await;
    let want = store_log(api, ReadAll::from_start().event_type("Placed")).await;
    assert_eq!(placed.iter().map(envelope_of).collect::<Vec<_>>(), want);
    assert_eq!(want.len(), 3);
    // Lists: several categories and several types, ANDed.
    let some = read_log(
        api,
        &admin,
        "category=slug,order&type=SlugClaimed,Placed",
        2,
    )
    .await;
    let all = store_log(api, ReadAll::from_start()).await;
    let want: Vec<Envelope> = all
        .iter()
        .filter(|e| ["slug", "order"].contains(&e.stream.category()))
        .filter(|e| ["SlugClaimed", "Placed"].contains(&e.event_type.as_str()))
        .cloned()
        .collect();
    assert_eq!(some.iter().map(envelope_of).collect::<Vec<_>>(), want);
    assert_eq!(want.len(), 5);
    // `after=<position>` resumes exactly after that event.
    let third = &all[2];
    let r = api
        .get(format!("/v1/events?after={}&limit=1000", third.position.0))
        .await;
    r.expect(200);
    let rest: Vec<Envelope> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(envelope_of)
        .collect();
    assert_eq!(rest, all[3..]);
}

/// The HTTP log equals the store's (in process).
pub async fn log_pages(store: ledger_tests::Store) {
    let api = Api::with_log(store.clone(), store);
    fill(&api).await;
    log_equals_the_store(&api).await;
}

/// A tenant token reads its tenant's stream and its slug claim, nothing else, filters or not.
pub async fn log_tenant_scope(store: ledger_tests::Store) {
    let api = Api::with_log(store.clone(), store);
    let (a, b) = fill(&api).await;
    let token = api.tenant_token(a).await;
    let own = read_log(&api, &token, "", 2).await;
    let streams: Vec<&str> = own.iter().map(|e| e["stream"].as_str().unwrap()).collect();
    assert!(!own.is_empty());
    assert!(
        streams
            .iter()
            .all(|s| *s == format!("tenant-{a}") || *s == "slug-log-a"),
        "{streams:?}"
    );
    assert!(streams.contains(&"slug-log-a"));
    let all = store_log(&api, ReadAll::from_start()).await;
    let want: Vec<Envelope> = all
        .iter()
        .filter(|e| e.stream.as_str() == format!("tenant-{a}") || e.stream.as_str() == "slug-log-a")
        .cloned()
        .collect();
    assert_eq!(own.iter().map(envelope_of).collect::<Vec<_>>(), want);
    // The live stream too.
    let live = api
        .req("GET", "/v1/events/live?seconds=1")
        .token(&token)
        .header("accept", "application/x-ndjson")
        .send()
        .await;
    live.expect(200);
    let live: Vec<Envelope> = live.ndjson().iter().map(envelope_of).collect();
    assert_eq!(live, want);
    for query in [
        "category=tenant",
        "category=order",
        "type=PaymentVerified",
        "category=slug",
    ] {
        let seen = read_log(&api, &token, query, 5).await;
        assert!(
            seen.iter()
                .all(|e| !e["stream"].as_str().unwrap().contains(&b.to_string())
                    && e["stream"] != "slug-log-b"
                    && e["stream"] != "order-7"),
            "{query}: {seen:?}"
        );
    }
}

/// Bad queries answer with their codes; no token is 401.
pub async fn log_bad_queries(store: ledger_tests::Store) {
    let api = Api::with_log(store.clone(), store);
    fill(&api).await;
    let bad = [
        ("/v1/events?cursor=12", 400, "invalid_query"),
        (
            "/v1/events?cursor=zz000000000000000000000000000000",
            400,
            "invalid_query",
        ),
        (
            "/v1/events?cursor=00000000000000000000000000000001&after=1",
            400,
            "invalid_query",
        ),
        ("/v1/events?after=999999", 409, "position_not_reached"),
        ("/v1/events?after=-1", 400, "invalid_query"),
        ("/v1/events?limit=0", 400, "invalid_query"),
        ("/v1/events?limit=100000", 400, "invalid_query"),
        ("/v1/events?category=", 400, "invalid_query"),
        ("/v1/events?type=A,,B", 400, "invalid_query"),
    ];
    for (uri, status, code) in bad {
        api.get(uri).await.expect_error(status, code);
    }
    api.req("GET", "/v1/events")
        .send()
        .await
        .expect_error(401, "unauthorized");
    // A category holding `-` is no category: nothing, not an error.
    let r = api.get("/v1/events?category=tenant-x").await;
    r.expect(200);
    assert_eq!(r.body["events"], json!([]));
}

/// An API built without the log answers 503 `log_unavailable`.
pub async fn log_unavailable(store: Store) {
    let api = Api::new(store);
    api.get("/v1/events")
        .await
        .expect_error(503, "log_unavailable");
}
