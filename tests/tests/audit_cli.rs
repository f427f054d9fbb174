//! `ledger audit state` and `ledger audit timeline` print what the HTTP routes answer, from the
//! database directly: the same JSON with `--format json`, a table by default; bad input exits 2.

use std::process::Stdio;
use std::sync::Arc;

use chrono::SecondsFormat;
use ledger_core::EventStore;
use ledger_tests::backend::Db;
use serde_json::{Value, json};
use tokio::process::Command;
use uuid::Uuid;

use crate::api_suite::client::Api;

/// Runs `ledger audit ...` on `db`: exit code, stdout, stderr.
async fn audit(db: &Db, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-under-test"))
        .env_remove("LEDGER_DATABASE_URL")
        .env("RUST_LOG", "error")
        .arg("--database-url")
        .arg(&db.url)
        .arg("audit")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("ledger runs");
    (
        out.status.code().expect("ledger exits"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The JSON error a failed run printed on stderr, checked: exit 2 with `code`.
fn bad_input((code, stdout, stderr): (i32, String, String), error: &str) {
    assert_eq!(code, 2, "stdout {stdout:?}, stderr {stderr:?}");
    assert!(stdout.is_empty(), "{stdout}");
    let e: Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(e["error"], error, "{e}");
}

store_test!(databases: audit_prints_what_the_routes_answer, |db| async move {
    db.migrate().await.unwrap();
    let store: Arc<dyn EventStore> = db.open(ledger_tests::options()).await.unwrap();
    let api = Api::new(store);
    let t = api.register("audited").await;
    api.ok(t, "acquire-lock", json!({"holder": "tab-a"})).await;
    api.ok(t, "verify-payment", json!({"checkout_session_id": "cs_1", "holder": "tab-a"}))
        .await;
    api.ok(t, "record-sync-failure", json!({"target": "crm", "last_error": "timeout"}))
        .await;
    let id = t.to_string();
    let stream = api.events(&format!("tenant-{t}")).await;
    let at = stream[2]
        .recorded_at
        .to_rfc3339_opts(SecondsFormat::AutoSi, true);

    let (code, out, err) = audit(&db, &["state", &id, "--at", &at, "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let printed: Value = serde_json::from_str(out.trim()).unwrap();
    let route = api.get(format!("/v1/tenants/{t}?as_of={at}")).await;
    route.expect(200);
    assert_eq!(printed, route.body);
    assert_eq!(printed["seq"], 3);

    let (code, out, err) = audit(&db, &["timeline", &id, "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let printed: Value = serde_json::from_str(out.trim()).unwrap();
    let route = api.get(format!("/v1/tenants/{t}/timeline?limit=1000")).await;
    assert_eq!(printed, route.body);

    let (code, table, err) = audit(&db, &["timeline", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(table.lines().count(), 1 + stream.len(), "{table}");
    assert!(table.contains("payment cs_1 verified"), "{table}");
    assert!(table.contains("sync to crm failed (1 attempt): timeout"), "{table}");
    let (code, table, err) = audit(&db, &["state", &id, "--at", &at]).await;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("PAYMENT_VERIFIED"), "{table}");
    assert!(table.contains("held by tab-a"), "{table}");

    bad_input(audit(&db, &["state", &id, "--at", "yesterday"]).await, "invalid_as_of");
    bad_input(
        audit(&db, &["state", &id, "--at", "2000-01-01T00:00:00Z"]).await,
        "tenant_not_found",
    );
    let unknown = Uuid::now_v7().to_string();
    bad_input(audit(&db, &["timeline", &unknown]).await, "tenant_not_found");
    bad_input(audit(&db, &["timeline", "acme"]).await, "invalid_tenant_id");
});
