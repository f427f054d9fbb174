//! Admin tokens stored in the database: servers started from different directories on one
//! PostgreSQL database accept the same tokens, `ledger token issue|revoke|list` manage them on
//! the database directly, and a revocation reaches every running server within a bounded time.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ledger_core::StreamName;
use ledger_tests::backend::Db;
use serde_json::{Value, json};

use crate::api_suite::client::Api;
use crate::serve::{Served, ledger_command, serve_command, start};

/// How long a revocation may take to reach a running server here: the servers re-check the
/// registry every second; the bound leaves room for a loaded machine.
const REVOCATION_BOUND: Duration = Duration::from_secs(10);

/// Starts `ledger serve` on `db` in `dir`, with `LEDGER_ADMIN_TOKEN` = `admin` (or none).
async fn serve_in(db: &Db, dir: &Path, admin: Option<&str>) -> Served {
    let mut command = serve_command(db, admin, &[]);
    command.current_dir(dir);
    start(command).await
}

/// Runs `ledger <args>` on `db`; returns the exit code, stdout and the last stderr line.
async fn ledger(db: &Db, args: &[&str]) -> (i32, String, String) {
    let out = ledger_command(db, None).args(args).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("").to_string();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        last,
    )
}

/// `ledger token list` as JSON values.
async fn list(db: &Db) -> Vec<Value> {
    let (code, stdout, stderr) = ledger(db, &["token", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The status each server answers an admin-only read with `token`.
async fn statuses(api: &Api, addrs: &[SocketAddr], token: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in addrs {
        // The client sends its requests to the servers in turn.
        let r = api
            .req("GET", "/v1/streams/probe-1/events")
            .token(token)
            .send()
            .await;
        out.push(r.status.as_u16());
    }
    out
}

/// Waits until every server refuses `token`; returns how long that took.
async fn until_refused(api: &Api, addrs: &[SocketAddr], token: &str) -> Duration {
    let started = Instant::now();
    loop {
        let s = statuses(api, addrs, token).await;
        if s.iter().all(|&s| s == 401) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < REVOCATION_BOUND,
            "a revoked token still works after {REVOCATION_BOUND:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two servers from two directories: the first start generates the token file, the second
/// finds the token stored and makes none of its own; both accept it, and a token issued by
/// `ledger token issue` on the database; revoking it reaches both without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_from_two_directories_share_admin_tokens() {
    ledger_tests::backend::postgres_db(|db| async move {
        db.migrate().await.unwrap();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = serve_in(&db, dir_a.path(), None).await;
        assert_eq!(a.startup["admin_token"], "generated");
        let name = db.url.rsplit('/').next().unwrap();
        let file = dir_a.path().join(format!("{name}.admin-token"));
        assert_eq!(a.startup["admin_token_file"], file.display().to_string());
        let b = serve_in(&db, dir_b.path(), None).await;
        assert_eq!(b.startup["admin_token"], "stored");
        assert!(b.startup.get("admin_token_file").is_none());
        assert_eq!(
            std::fs::read_dir(dir_b.path()).unwrap().count(),
            0,
            "the second server wrote a file"
        );

        let first = std::fs::read_to_string(&file).unwrap().trim().to_string();
        let addrs = vec![a.addr, b.addr];
        let store = db.open(ledger_tests::options()).await.unwrap();
        let api = Api::tcp(addrs.clone(), first.clone(), store.clone());
        assert_eq!(statuses(&api, &addrs, &first).await, [200, 200]);

        let (code, stdout, stderr) =
            ledger(&db, &["token", "issue", "--role", "admin", "--name", "ops"]).await;
        assert_eq!(code, 0, "{stderr}");
        let issued: Value = serde_json::from_str(stdout.trim()).unwrap();
        let ops = issued["token"].as_str().unwrap().to_string();
        assert_eq!(
            (&issued["name"], &issued["role"], &issued["revoked"]),
            (&json!("ops"), &json!("admin"), &json!(false))
        );
        assert_eq!(statuses(&api, &addrs, &ops).await, [200, 200]);
        let (code, _, stderr) = ledger(&db, &["token", "issue", "--name", "ops"]).await;
        assert_eq!(code, 2);
        assert_eq!(
            serde_json::from_str::<Value>(&stderr).unwrap()["error"],
            "token_name_taken"
        );

        // Appends record which token acted.
        let ops_api = Api::tcp(addrs.clone(), ops.clone(), store.clone());
        let t = ops_api.register("token-metadata").await;
        let events = ops_api.events(&format!("tenant-{t}")).await;
        let actor = &events[0].metadata["actor"];
        assert_eq!(
            (&actor["role"], &actor["token"], &actor["token_id"]),
            (&json!("admin"), &json!("ops"), &issued["token_id"])
        );

        // The list names every token and shows neither a token nor a hash.
        let listed = list(&db).await;
        let names: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["bootstrap", "ops"]);
        for t in &listed {
            for key in ["token_id", "name", "role", "created_at", "revoked"] {
                assert!(t.get(key).is_some(), "{key} missing in {t}");
            }
            let text = t.to_string();
            assert!(!text.contains("la_") && !text.contains("sha256"), "{text}");
        }

        let (code, stdout, stderr) = ledger(&db, &["token", "revoke", "ops"]).await;
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            serde_json::from_str::<Value>(stdout.trim()).unwrap()["was_already_revoked"],
            false
        );
        let took = until_refused(&api, &addrs, &ops).await;
        eprintln!("a revoked token was refused by both servers after {took:?}");
        let r = api
            .req("GET", "/v1/streams/probe-1/events")
            .token(&ops)
            .send()
            .await;
        r.expect_error(401, "unauthorized");
        assert!(
            r.body["message"].as_str().unwrap().contains("revoked"),
            "{}",
            r.text
        );
        assert_eq!(
            statuses(&api, &addrs, &first).await,
            [200, 200],
            "revoking one token hit another"
        );
        let revoked = list(&db).await;
        assert_eq!(
            (&revoked[1]["revoked"], revoked[1]["revoked_at"].is_string()),
            (&json!(true), true)
        );

        // Rotating the generated token: by id, as `token list` shows it.
        let id = listed[0]["token_id"].as_str().unwrap();
        let (code, _, stderr) = ledger(&db, &["token", "revoke", id]).await;
        assert_eq!(code, 0, "{stderr}");
        until_refused(&api, &addrs, &first).await;
        let (code, _, stderr) = ledger(&db, &["token", "revoke", "nobody"]).await;
        assert_eq!(code, 2);
        assert_eq!(
            serde_json::from_str::<Value>(&stderr).unwrap()["error"],
            "token_not_found"
        );
        a.stop().await;
        b.stop().await;
        drop(store);
    })
    .await;
}

/// A token given in the environment is stored as `bootstrap`, so the other servers accept it;
/// once revoked it stays refused, also by a server started again with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_token_is_stored_and_stays_revoked() {
    ledger_tests::backend::sqlite_db(|db| async move {
        const GIVEN: &str = "tokens-test-given-admin-token";
        let dir = tempfile::tempdir().unwrap();
        let server = serve_in(&db, dir.path(), Some(GIVEN)).await;
        assert_eq!(server.startup["admin_token"], "env");
        let listed = list(&db).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["name"], "bootstrap");
        let store = db.open(ledger_tests::options()).await.unwrap();
        let api = Api::tcp(vec![server.addr], GIVEN.to_string(), store.clone());
        assert_eq!(statuses(&api, &[server.addr], GIVEN).await, [200]);
        // The registry is written by `ledger token` and `ledger serve` only, not over HTTP.
        api.req("POST", "/v1/streams/admintoken-all/events")
            .admin()
            .json(json!({"expected_seq": "any", "events": [{"type": "AdminTokenRevoked", "data": {}}]}))
            .send()
            .await
            .expect_error(422, "invalid_event");
        let (code, _, stderr) = ledger(&db, &["token", "revoke", "bootstrap"]).await;
        assert_eq!(code, 0, "{stderr}");
        until_refused(&api, &[server.addr], GIVEN).await;
        server.stop().await;

        let again = serve_in(&db, dir.path(), Some(GIVEN)).await;
        let api = Api::tcp(vec![again.addr], GIVEN.to_string(), store.clone());
        assert_eq!(statuses(&api, &[again.addr], GIVEN).await, [401]);
        assert_eq!(list(&db).await.len(), 1, "a revoked token was stored again");
        again.stop().await;
        let registry = StreamName::parse("admintoken-all").unwrap();
        assert_eq!(store.stream_seq(registry).await.unwrap().0, 2);
    })
    .await;
}
