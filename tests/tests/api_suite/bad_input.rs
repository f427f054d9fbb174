//! Bad input of every kind: each a 4xx JSON error with a code, the log unchanged.

use super::client::{Api, Store};

/// The table of bad requests.
pub async fn bad_input_table(store: Store) {
    let api = Api::new(store);
    let t = api.register("bad-input").await;
    let before = api.log_len().await;
    let c = |name: &str| format!("/v1/tenants/{t}/commands/{name}");
    let big = format!("{{\"holder\": \"{}\"}}", "x".repeat(5 * 1024 * 1024));
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "POST",
            c("verify-payment"),
            r#"{"checkout_session_id":"#.into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            c("verify-payment"),
            "not json at all".into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            c("verify-payment"),
            r#"{"checkout_session_id": 5}"#.into(),
            422,
            "invalid_body",
        ),
        ("POST", c("acquire-lock"), "{}".into(), 422, "invalid_body"),
        (
            "POST",
            c("acquire-lock"),
            r#"{"holder": "a", "extra": 1}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            c("acquire-lock"),
            "[1, 2]".into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            c("acquire-lock"),
            r#""text""#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            c("acquire-lock"),
            r#"{"holder": ""}"#.into(),
            422,
            "invalid_command",
        ),
        (
            "POST",
            c("acquire-lock"),
            r#"{"holder": "a", "command": "release-lock"}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            c("record-step-failure"),
            r#"{"stage": "nope", "code": "x"}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            c("backfill-phase"),
            r#"{"phase": "DONE"}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            c("fly-to-the-moon"),
            "{}".into(),
            404,
            "unknown_command",
        ),
        ("POST", c("acquire-lock"), big, 413, "payload_too_large"),
        (
            "POST",
            "/v1/tenants/not-a-uuid/commands/acquire-lock".into(),
            r#"{"holder": "a"}"#.into(),
            400,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/v1/tenants/0190c3a1-7b2e-7c4d-9f00-1a2b3c4d5e6/commands/acquire-lock".into(),
            r#"{"holder": "a"}"#.into(),
            400,
            "invalid_tenant_id",
        ),
        (
            "GET",
            "/v1/tenants/123".into(),
            String::new(),
            400,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/v1/tenants".into(),
            r#"{"slug": "fine-slug", "name": "x", "tenant_id": "nope"}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/tenants".into(),
            r#"{"slug": 7, "name": "x"}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/tenants".into(),
            "{".into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/streams/order-9/events".into(),
            r#"{"expected_seq": 0, "events": "nope"}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/streams/order-9/events".into(),
            r#"{"expected_seq": 0, "events": []}"#.into(),
            422,
            "empty_batch",
        ),
        (
            "POST",
            "/v1/streams/order-9/events".into(),
            r#"{"expected_seq": 0, "events": [{"type": "", "data": {}}]}"#.into(),
            422,
            "invalid_input",
        ),
        (
            "POST",
            "/v1/streams/order-9/events".into(),
            r#"{"expected_seq": 0, "events": [{"type": "A", "data": {}, "metadata": [1]}]}"#.into(),
            422,
            "invalid_metadata",
        ),
        (
            "POST",
            "/v1/streams/order-9/events".into(),
            r#"{"expected_seq": -1, "events": [{"type": "A", "data": {}}]}"#.into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/streams/order-9/events".into(),
            r#"{"expected_seq": 0, "events": [{"type": "A", "data": {}, "event_id": "zzz"}]}"#
                .into(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/streams/order-9/events".into(),
            "[]".into(),
            422,
            "invalid_body",
        ),
        (
            "GET",
            "/v1/nothing-here".into(),
            String::new(),
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/tenants".into(),
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            "PUT",
            format!("/v1/tenants/{t}"),
            "{}".into(),
            405,
            "method_not_allowed",
        ),
    ];
    for (method, url, body, status, code) in cases {
        let r = api
            .req(method, &url)
            .admin()
            .header("content-type", "application/json")
            .raw(body)
            .send()
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{method} {url}: {}",
            r.text
        );
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            r.text
        );
        assert!(r.header("x-request-id").is_some());
    }
    // Malformed id headers.
    api.req("POST", c("acquire-lock"))
        .admin()
        .header("x-correlation-id", "c".repeat(300))
        .raw(r#"{"holder": "a"}"#)
        .send()
        .await
        .expect_error(400, "invalid_header");
    assert_eq!(api.log_len().await, before);
    assert_eq!(api.seq(&format!("tenant-{t}")).await, 1);
}
