//! The HTTP contract of a real `ledger serve`: every error is a bounded `{error, message}`
//! JSON body, even one hyper answers before any handler runs; a `min_position` beyond the log
//! is refused at once; `/metrics` can require a token.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::serve::{ADMIN, client, serve_with};

/// Sends `head` (a request line and headers, raw bytes) on a fresh connection and returns the
/// status and the body as JSON (`Null` when it is not JSON) and its length.
async fn raw(addr: SocketAddr, head: &[u8]) -> (u16, Value, usize) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let rest =
        format!("\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\nconnection: close\r\n\r\n");
    // A server that refuses an oversized head answers and closes before reading the rest, so
    // a write may fail with a broken pipe: the answer is what counts.
    let sent = match stream.write_all(head).await {
        Ok(()) => stream.write_all(rest.as_bytes()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = &answer[split + 4..];
    (
        status,
        serde_json::from_slice(body).unwrap_or(Value::Null),
        body.len(),
    )
}

/// A status and the error code of its body.
type Answer = (u16, &'static str);

store_test!(databases: framework_errors_are_json, |db| async move {
    db.migrate().await.unwrap();
    let server = serve_with(&db, Some(ADMIN), &[]).await;
    let long = "x".repeat(70_000);
    let too_large = [(431, "headers_too_large")];
    // A request line longer than the head buffer is `uri_too_long` when the server has read
    // its end, `headers_too_large` when the buffer fills before: it depends on how the bytes
    // arrive, and both refuse it with a JSON body.
    let long_line = [(414, "uri_too_long"), (431, "headers_too_large")];
    let cases: [(Vec<u8>, &[Answer]); 5] = [
        (b"GET /v1/streams/order-\xff/events HTTP/1.1".to_vec(), &[(400, "invalid_request")]),
        (b"GET /v1/tenants?phase=\xc3\x28 HTTP/1.1".to_vec(), &[(400, "invalid_request")]),
        (format!("GET /v1/tenants/{long} HTTP/1.1").into_bytes(), &long_line),
        (
            format!("GET /healthz HTTP/1.1\r\nx-big: {}", "y".repeat(500_000)).into_bytes(),
            &too_large,
        ),
        (b"GET /v1/streams/order-%FF/events HTTP/1.1".to_vec(), &[(400, "invalid_path")]),
    ];
    for (head, expected) in cases {
        let (got, body, _) = raw(server.addr, &head).await;
        let line = String::from_utf8_lossy(&head[..head.len().min(60)]).to_string();
        let answer = (got, body["error"].as_str().unwrap_or_default());
        assert!(expected.contains(&answer), "{line}: {got} {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{line}");
    }
    server.stop().await;
});

store_test!(databases: error_bodies_quote_input_briefly, |db| async move {
    db.migrate().await.unwrap();
    let server = serve_with(&db, Some(ADMIN), &[]).await;
    let long = "a".repeat(60_000);
    let heads = [
        format!("GET /v1/tenants/{long} HTTP/1.1"),
        format!("GET /v1/streams/order-{long}/events HTTP/1.1"),
        format!("GET /v1/tenants?phase={long} HTTP/1.1"),
        format!("GET /v1/projections/{long} HTTP/1.1"),
        format!("GET /{long} HTTP/1.1"),
    ];
    for head in heads {
        let (status, body, len) = raw(server.addr, head.as_bytes()).await;
        assert!((400..500).contains(&status), "{status}: {body}");
        assert!(len < 2_000, "{} bytes of error for {}", len, &head[..40]);
        assert!(body.to_string().contains("characters)"), "{body}");
    }
    let api = client(&db, vec![server.addr]).await;
    let t = api.register("brief").await;
    let bodies = [
        (format!("/v1/tenants/{t}/commands/{long}"), json!({})),
        ("/v1/tenants".to_string(), json!({"slug": long, "name": "x"})),
        (
            format!("/v1/tenants/{t}/commands/record-step-failure"),
            json!({"stage": long, "code": "x"}),
        ),
        (
            "/v1/streams/tenant-x/events".to_string(),
            json!({"expected_seq": "any", "events": [{"type": long, "data": {}}]}),
        ),
    ];
    for (path, body) in bodies {
        let r = api.req("POST", &path).admin().json(body).send().await;
        assert!(r.status.is_client_error(), "{path}: {}", r.text);
        assert!(r.text.len() < 2_000, "{} bytes of error for {path}", r.text.len());
    }
    server.stop().await;
});

store_test!(databases: position_beyond_the_log_is_refused_at_once, |db| async move {
    db.migrate().await.unwrap();
    let server = serve_with(&db, Some(ADMIN), &[]).await;
    let api = client(&db, vec![server.addr]).await;
    let t = api.register("far").await;
    let written = api.ok(t, "acquire-lock", json!({"holder": "a"})).await;
    let position = written.body["position"].as_u64().unwrap();
    for path in ["/v1/tenants", "/v1/locks", "/v1/pending-syncs"] {
        let started = Instant::now();
        let r = api.get(format!("{path}?min_position={}", position + 1_000_000)).await;
        r.expect_error(409, "position_not_reached");
        assert!(r.body["head"].as_u64().unwrap() >= position, "{}", r.text);
        // At once, not after the 5 s wait for a projection that is behind.
        assert!(started.elapsed() < Duration::from_secs(4), "{path} took {:?}", started.elapsed());
        api.get(format!("{path}?min_position={position}")).await.expect(200);
    }
    server.stop().await;
});

store_test!(databases: metrics_token_protects_metrics, |db| async move {
    db.migrate().await.unwrap();
    let server = serve_with(&db, Some(ADMIN), &["--metrics-token", "scrape-me"]).await;
    let api = client(&db, vec![server.addr]).await;
    api.req("GET", "/metrics").send().await.expect_error(401, "unauthorized");
    api.req("GET", "/metrics")
        .token("wrong")
        .send()
        .await
        .expect_error(401, "unauthorized");
    let scraped = api.req("GET", "/metrics").token("scrape-me").send().await;
    scraped.expect(200);
    assert!(scraped.text.contains("ledger_build_info{version="), "{}", scraped.text);
    assert!(scraped.text.contains("ledger_projection_lag_events{projection=\"tenant_phase\"}"));
    api.req("GET", "/metrics").admin().send().await.expect(200);
    server.stop().await;
});
