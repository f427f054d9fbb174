//! Appending to and reading streams directly.

use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{Api, Reply, Store};
use ledger_api::ApiConfig;

async fn append(api: &Api, stream: &str, body: Value) -> Reply {
    api.req("POST", format!("/v1/streams/{stream}/events"))
        .admin()
        .json(body)
        .send()
        .await
}

fn events(n: usize, from: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| json!({"type": "Noted", "data": {"i": i}}))
            .collect(),
    )
}

/// Appends with an expected seq, then pages through the stream.
pub async fn append_and_page(store: Store) {
    let api = Api::new(store);
    let r = append(
        &api,
        "order-1",
        json!({"expected_seq": "no_stream", "events": [
            {"type": "OrderPlaced", "data": {"n": 1}},
            {"type": "OrderPaid", "data": {"n": 2}, "metadata": {"source": "test", "actor": "spoofed"}},
        ]}),
    )
    .await;
    r.expect(200);
    assert_eq!(r.body["stream"], "order-1");
    assert_eq!(
        (r.body["first_seq"].as_u64(), r.body["last_seq"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(r.body["position"].is_u64());
    let id = Uuid::now_v7();
    let r = append(
        &api,
        "order-1",
        json!({"expected_seq": 2, "events": [
            {"event_id": id, "type": "Noted", "data": {}},
            {"type": "Noted", "data": {}},
            {"type": "Noted", "data": {}},
        ]}),
    )
    .await;
    r.expect(200);
    assert_eq!(r.body["last_seq"], 5);

    let stored = api.events("order-1").await;
    assert_eq!(stored[1].metadata["actor"]["role"], "admin");
    assert_eq!(stored[1].metadata["source"], "test");
    assert!(stored[1].metadata["request_id"].is_string());
    assert_eq!(stored[2].event_id, id);

    let page = api.get("/v1/streams/order-1/events?limit=2").await;
    page.expect(200);
    let seqs = |p: &Reply| -> Vec<u64> {
        p.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(page.body["next_from_seq"], 3);
    assert_eq!(page.body["events"][0]["type"], "OrderPlaced");
    assert_eq!(page.body["events"][0]["stream"], "order-1");
    assert!(page.body["events"][0]["recorded_at"].is_string());
    let page = api
        .get("/v1/streams/order-1/events?from_seq=3&limit=2")
        .await;
    assert_eq!(seqs(&page), [3, 4]);
    assert_eq!(page.body["next_from_seq"], 5);
    let page = api
        .get("/v1/streams/order-1/events?from_seq=5&limit=2")
        .await;
    assert_eq!(seqs(&page), [5]);
    assert!(page.body["next_from_seq"].is_null());
    let page = api.get("/v1/streams/order-1/events").await;
    assert_eq!(seqs(&page), [1, 2, 3, 4, 5]);
    assert!(page.body["next_from_seq"].is_null());
    let empty = api.get("/v1/streams/order-2/events").await;
    empty.expect(200);
    assert_eq!(empty.body, json!({"events": [], "next_from_seq": null}));
}

/// `expected_seq` is required (428), checked (409 with the current seq), and may be `any`.
pub async fn expected_seq_rules(store: Store) {
    let api = Api::new(store);
    let r = append(&api, "cart-1", json!({"events": events(1, 0)})).await;
    r.expect_error(428, "expected_seq_required");
    append(
        &api,
        "cart-1",
        json!({"expected_seq": null, "events": events(1, 0)}),
    )
    .await
    .expect_error(428, "expected_seq_required");
    assert_eq!(api.seq("cart-1").await, 0);
    append(
        &api,
        "cart-1",
        json!({"expected_seq": "exists", "events": events(1, 0)}),
    )
    .await
    .expect_error(409, "conflict");
    append(
        &api,
        "cart-1",
        json!({"expected_seq": 0, "events": events(1, 0)}),
    )
    .await
    .expect(200);
    let r = append(
        &api,
        "cart-1",
        json!({"expected_seq": 0, "events": events(1, 1)}),
    )
    .await;
    r.expect_error(409, "conflict");
    assert_eq!(r.body["current_seq"], 1);
    assert_eq!(r.body["expected_seq"], 0);
    assert_eq!(r.body["stream"], "cart-1");
    append(
        &api,
        "cart-1",
        json!({"expected_seq": "no_stream", "events": events(1, 1)}),
    )
    .await
    .expect_error(409, "conflict");
    append(
        &api,
        "cart-1",
        json!({"expected_seq": "any", "events": events(1, 1)}),
    )
    .await
    .expect(200);
    append(
        &api,
        "cart-1",
        json!({"expected_seq": "exists", "events": events(1, 2)}),
    )
    .await
    .expect(200);
    append(
        &api,
        "cart-1",
        json!({"expected_seq": "soon", "events": events(1, 3)}),
    )
    .await
    .expect_error(422, "invalid_body");
    // If-Match instead of the body field.
    let url = "/v1/streams/cart-1/events";
    let r = api
        .req("POST", url)
        .admin()
        .header("if-match", "\"1\"")
        .json(json!({"events": events(1, 3)}))
        .send()
        .await;
    r.expect_error(409, "conflict");
    assert_eq!(r.body["current_seq"], 3);
    api.req("POST", url)
        .admin()
        .header("if-match", "\"3\"")
        .json(json!({"events": events(1, 3)}))
        .send()
        .await
        .expect(200);
    assert_eq!(api.seq("cart-1").await, 4);
}

/// `tenant-*`, `slug-*` and `tenanttoken-*` streams take only their own valid events.
pub async fn catalog_streams(store: Store) {
    let api = Api::new(store);
    let t = api.register("catalog").await;
    let stream = format!("tenant-{t}");
    for (event, why) in [
        (json!({"type": "Nope", "data": {}}), "unknown type"),
        (
            json!({"type": "PaymentVerified", "data": {"at": "2026-01-01T00:00:00Z"}}),
            "missing field",
        ),
        (
            json!({"type": "PaymentVerified", "data": {"checkout_session_id": 5, "at": "2026-01-01T00:00:00Z"}}),
            "wrong type",
        ),
        (
            json!({"type": "ApiKeyIssued", "data": {"key": "sk", "at": "2026-01-01T00:00:00Z"}}),
            "unknown field",
        ),
    ] {
        let r = append(&api, &stream, json!({"expected_seq": 1, "events": [event]})).await;
        r.expect_error(422, "invalid_event");
        assert_eq!(r.body["index"], 0, "{why}");
    }
    append(
        &api,
        "slug-free",
        json!({"expected_seq": "no_stream", "events": [{"type": "Foo", "data": {}}]}),
    )
    .await
    .expect_error(422, "invalid_event");
    append(&api, &format!("tenanttoken-{t}"), json!({"expected_seq": "any", "events": [{"type": "TenantTokenIssued", "data": {"sha256": 1}}]}))
        .await
        .expect_error(422, "invalid_event");
    assert_eq!(api.seq(&stream).await, 1);
    let ok = append(
        &api,
        &stream,
        json!({"expected_seq": 1, "events": [{"type": "PaymentVerified", "data": {"checkout_session_id": "cs", "at": "2026-01-01T00:00:00Z"}}]}),
    )
    .await;
    ok.expect(200);
    let view = api.get(format!("/v1/tenants/{t}")).await;
    assert_eq!(view.body["phase"], "PAYMENT_VERIFIED");
}

/// An event over the store's size limit and a body over the server's limit are 413.
pub async fn size_limits(store: Store) {
    let api = Api::new(store.clone());
    let big = "x".repeat(1024 * 1024 + 10);
    let r = append(
        &api,
        "blob-1",
        json!({"expected_seq": "any", "events": [{"type": "Big", "data": {"b": big}}]}),
    )
    .await;
    r.expect_error(413, "event_too_large");
    assert_eq!(api.seq("blob-1").await, 0);
    let small = Api::with_config(
        store,
        ApiConfig {
            max_body_bytes: 1024,
            ..ApiConfig::default()
        },
    );
    let r = append(&small, "blob-1", json!({"expected_seq": "any", "events": [{"type": "Big", "data": {"b": "y".repeat(2048)}}]})).await;
    r.expect_error(413, "payload_too_large");
    let t = small.register("small").await;
    small
        .command(t, "acquire-lock", json!({"holder": "z".repeat(4096)}))
        .await
        .expect_error(413, "payload_too_large");
    assert_eq!(api.seq("blob-1").await, 0);
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 1);
}

/// Appends with an Idempotency-Key (or with the caller's own event ids) are retried safely.
pub async fn idempotent_append(store: Store) {
    let api = Api::new(store);
    let send = |body: Value| {
        api.req("POST", "/v1/streams/invoice-7/events")
            .admin()
            .header("idempotency-key", "append-1")
            .json(body)
            .send()
    };
    let body = json!({"expected_seq": "no_stream", "events": events(2, 0)});
    let first = send(body.clone()).await;
    first.expect(200);
    let second = send(body).await;
    second.expect(200);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(api.seq("invoice-7").await, 2);
    send(json!({"expected_seq": "no_stream", "events": events(2, 5)}))
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(api.seq("invoice-7").await, 2);

    let id = Uuid::now_v7();
    let own = |data: Value| json!({"expected_seq": "any", "events": [{"event_id": id, "type": "Own", "data": data}]});
    let a = append(&api, "invoice-8", own(json!({"v": 1}))).await;
    a.expect(200);
    let b = append(&api, "invoice-8", own(json!({"v": 1}))).await;
    b.expect(200);
    assert_eq!(b.body, a.body);
    append(&api, "invoice-8", own(json!({"v": 2})))
        .await
        .expect_error(422, "event_id_reused");
    assert_eq!(api.seq("invoice-8").await, 1);
}

/// Bad stream names and queries are refused with their codes.
pub async fn bad_stream_requests(store: Store) {
    let api = Api::new(store);
    append(
        &api,
        "NoCategory",
        json!({"expected_seq": "any", "events": events(1, 0)}),
    )
    .await
    .expect_error(422, "invalid_stream_name");
    api.get("/v1/streams/Bad-1/events")
        .await
        .expect_error(422, "invalid_stream_name");
    for q in ["limit=abc", "limit=0", "limit=5000", "from_seq=-1"] {
        api.get(format!("/v1/streams/order-1/events?{q}"))
            .await
            .expect_error(400, "invalid_query");
    }
    assert_eq!(api.log_len().await, 0);
}
