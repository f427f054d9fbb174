//! The integrity tools end to end: `ledger verify` (with pinned heads from
//! `GET /v1/streams/{stream}/head`), `ledger export`, the independent checker in `examples/`,
//! and `ledger import` from one backend into the other, which refuses an altered line.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use futures::TryStreamExt;
use ledger_core::chain::ChainedEvent;
use ledger_core::{EventStore, ExpectedSeq, Position, Seq};
use ledger_tests::backend::{Db, Kind};
use ledger_tests::fixtures::*;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::api_suite::client::Api;

/// Runs `ledger <args>` on `url`: exit code, stdout, stderr.
async fn ledger(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-under-test"))
        .env_remove("LEDGER_DATABASE_URL")
        .env("RUST_LOG", "error")
        .arg("--database-url")
        .arg(url)
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

/// The JSON lines of an output.
fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs the example checker on `file`: exit code and output.
async fn python_check(file: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/verify_chain.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(file)
        .output()
        .await
        .expect("python3 runs");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap(),
    )
}

/// The whole log of `url`'s database with its links.
async fn exported_log(db: &Db) -> Vec<ChainedEvent> {
    let store = db.open(ledger_tests::options()).await.unwrap();
    store
        .chained_log(Position::START)
        .try_collect()
        .await
        .unwrap()
}

/// A database of the other backend than `db`, fresh, for the import.
async fn with_other<F, Fut>(db: &Db, body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    match db.kind {
        Kind::Sqlite => ledger_tests::backend::postgres_db(body).await,
        Kind::Postgres => ledger_tests::backend::sqlite_db(body).await,
    }
}

store_test!(databases: verify_export_and_import_on_the_command_line, |db| async move {
    db.migrate().await.unwrap();
    let store = db.open(ledger_tests::options()).await.unwrap();
    let events: Arc<dyn EventStore> = store.clone();
    let api = Api::with_chains(events, store.clone());
    let t = api.register("chained").await;
    api.ok(t, "acquire-lock", json!({"holder": "tab-a"})).await;
    api.ok(t, "verify-payment", json!({"checkout_session_id": "cs_1", "holder": "tab-a"}))
        .await;
    let other = stream("order-7");
    store
        .append(other.clone(), ExpectedSeq::NoStream, vec![ev("Priced", json!({"total": 12.5, "qty": 3, "note": "é \"q\" \n"}))])
        .await
        .unwrap();

    // The head over HTTP, pinned by an auditor.
    let tenant_stream = format!("tenant-{t}");
    let head = api.get(format!("/v1/streams/{tenant_stream}/head")).await;
    head.expect(200);
    let pinned = store.stream_head(stream(&tenant_stream)).await.unwrap().unwrap();
    assert_eq!(head.body["seq"], pinned.seq.0);
    assert_eq!(head.body["hash"], pinned.hash.to_string());
    api.get("/v1/streams/order-none/head").await.expect_error(404, "stream_not_found");
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("pinned.json");
    std::fs::write(&pins, format!("[{}]", head.text)).unwrap();

    // Everything verifies; every stream's head can be written out.
    let heads = dir.path().join("heads.jsonl");
    let (code, out, err) = ledger(&db.url, &["verify", "--write-heads", heads.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out} {err}");
    let summary = lines(&out).pop().unwrap();
    assert_eq!(summary["verified"], true, "{summary}");
    let total = summary["events"].as_u64().unwrap();
    assert!(total >= 4, "{summary}");
    let written = std::fs::read_to_string(&heads).unwrap();
    assert_eq!(written.lines().count() as u64, summary["streams"].as_u64().unwrap());

    // The stream is extended: the pin still holds.
    api.ok(t, "release-lock", json!({"holder": "tab-a"})).await;
    let (code, out, err) = ledger(&db.url, &["verify", "--heads", pins.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(lines(&out).pop().unwrap()["pinned_heads"], 1);
    let (code, out, _) = ledger(&db.url, &["verify", "--stream", "order-7"]).await;
    assert_eq!((code, lines(&out)[0]["events"].as_u64()), (0, Some(1)));

    // The export, checked by the independent script.
    let (code, exported, err) = ledger(&db.url, &["export"]).await;
    assert_eq!(code, 0, "{err}");
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let (code, said) = python_check(&file).await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(", 0 broken links"), "{said}");
    let (code, since, _) = ledger(&db.url, &["export", "--since", "2"]).await;
    assert_eq!(code, 0);
    assert_eq!(since.lines().collect::<Vec<_>>(), exported.lines().skip(2).collect::<Vec<_>>());

    // One altered line: the script names it, and an import refuses it by number.
    let mut altered: Vec<String> = exported.lines().map(String::from).collect();
    altered[2] = altered[2].replacen("tab-a", "tab-b", 1);
    assert_ne!(altered[2], exported.lines().nth(2).unwrap());
    let bad = dir.path().join("altered.jsonl");
    std::fs::write(&bad, altered.join("\n") + "\n").unwrap();
    let (code, said) = python_check(&bad).await;
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("line 3:"), "{said}");
    with_other(&db, |target| async move {
        let (code, out, err) = ledger(&target.url, &["import", bad.to_str().unwrap()]).await;
        assert_eq!(code, 1, "{out} {err}");
        let e: Value = serde_json::from_str(err.trim()).unwrap();
        assert_eq!(e["error"], "import_refused", "{e}");
        assert!(e["message"].as_str().unwrap().starts_with("line 3: "), "{e}");
        assert!(exported_log(&target).await.is_empty(), "a refused import wrote nothing");
    })
    .await;

    // Into the other backend: the same log, event for event, and it verifies there.
    let source = exported_log(&db).await;
    with_other(&db, |target| async move {
        let (code, out, err) = ledger(&target.url, &["import", file.to_str().unwrap()]).await;
        assert_eq!(code, 0, "{out} {err}");
        let report: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["imported"], total + 1, "{report}");
        assert_eq!(exported_log(&target).await, source);
        let (code, out, _) = ledger(&target.url, &["verify"]).await;
        assert_eq!(code, 0, "{out}");
        // The projections were rebuilt: the tenant is listed there.
        let (code, again, _) = ledger(&target.url, &["export"]).await;
        assert_eq!((code, again), (0, exported));
        // Appends go on from the imported heads, chained.
        let store = target.open(ledger_tests::options()).await.unwrap();
        store.append(stream("order-7"), ExpectedSeq::Exact(Seq(1)), evs("More", 1)).await.unwrap();
        let (code, out, _) = ledger(&target.url, &["verify"]).await;
        assert_eq!(code, 0, "{out}");
        // A second import into the same database is refused whole.
        let (code, _, err) = ledger(&target.url, &["import", file.to_str().unwrap()]).await;
        assert_eq!(code, 2, "{err}");
    })
    .await;

    // Tampering: verify names the stream and seq, exit 1.
    db.tamper("UPDATE events SET data = '{\"total\": 13}' WHERE stream = 'order-7'")
        .await;
    let (code, out, err) = ledger(&db.url, &["verify"]).await;
    assert_eq!(code, 1, "{out} {err}");
    let found = lines(&out);
    assert_eq!(found[0]["stream"], "order-7");
    assert_eq!(found[0]["seq"], 1);
    assert_eq!(found[0]["fault"], "payload_changed");
    assert!(found[0]["message"].as_str().unwrap().starts_with("order-7 seq 1: payload changed"));
    assert_eq!(found.last().unwrap()["verified"], false);
    let e: Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(e["error"], "chain_broken");

    // Rewriting the pinned stream's history breaks the pin even with the chain made whole.
    let (code, out, _) = ledger(&db.url, &["verify", "--stream", &tenant_stream]).await;
    assert_eq!(code, 0, "{out}");
    db.tamper(&format!(
        "DELETE FROM events WHERE stream = '{tenant_stream}' AND seq >= {}",
        pinned.seq.0
    ))
    .await;
    let (code, out, _) = ledger(&db.url, &["verify", "--heads", pins.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    let found = lines(&out);
    let gone = found.iter().find(|b| b["fault"] == "pinned_head_gone").unwrap();
    assert_eq!(gone["stream"], tenant_stream.as_str());
    assert_eq!(gone["seq"], pinned.seq.0);
});
