//! Real `ledger serve` processes (the `ledger-under-test` binary of this package): startup and
//! its JSON line, the API over TCP, the admin token file, graceful shutdown with a request in
//! flight, the three races with three servers sharing one PostgreSQL database, a busy port,
//! `--migrate` and the onboarding policy flags.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use ledger_tests::backend::{Db, Kind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

use crate::api_suite::client::{Api, Reply};
use crate::api_suite::commands::cmd;
use crate::api_suite::races;
use crate::api_suite::{audit_queries, log};

/// The admin token the servers get through `LEDGER_ADMIN_TOKEN`.
pub(crate) const ADMIN: &str = "serve-test-admin-token-0123456789";

/// How long a server may take to start or to stop.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A running `ledger serve`.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) startup: Value,
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// The `ledger serve` command on `db` (port 0), isolated from the caller's environment.
pub(crate) fn serve_command(db: &Db, admin: Option<&str>, extra: &[&str]) -> Command {
    let mut cmd = ledger_command(db, admin);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
    cmd
}

/// A `ledger` command on `db` with `LEDGER_ADMIN_TOKEN` = `admin` (or unset), isolated from the
/// caller's environment; the caller adds the subcommand.
pub(crate) fn ledger_command(db: &Db, admin: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-under-test"));
    cmd.arg("--database-url")
        .arg(&db.url)
        .env_remove("LEDGER_DATABASE_URL")
        .env_remove("LEDGER_LOCK_TTL")
        .env_remove("LEDGER_REVEAL_WINDOW")
        .env_remove("LEDGER_ADMIN_TOKEN")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(admin) = admin {
        cmd.env("LEDGER_ADMIN_TOKEN", admin);
    }
    cmd
}

/// Starts `ledger serve` and waits for its startup line.
async fn serve(db: &Db, admin: Option<&str>) -> Served {
    serve_with(db, admin, &[]).await
}

/// Starts `ledger serve` with `extra` arguments and waits for its startup line.
pub(crate) async fn serve_with(db: &Db, admin: Option<&str>, extra: &[&str]) -> Served {
    start(serve_command(db, admin, extra)).await
}

/// Starts a `ledger serve` command and waits for its startup line.
pub(crate) async fn start(mut command: Command) -> Served {
    let mut child = command.spawn().expect("cannot start ledger serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = match timeout(PATIENCE, stdout.next_line()).await {
        Ok(Ok(Some(line))) => line,
        other => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = timeout(Duration::from_secs(2), e.read_to_string(&mut err)).await;
            }
            panic!("ledger serve did not start ({other:?}): {err}");
        }
    };
    let startup: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the startup line is not JSON ({e}): {line}"));
    let addr = startup["listening"].as_str().unwrap().parse().unwrap();
    Served {
        child,
        addr,
        startup,
        _stdout: stdout,
    }
}

impl Served {
    /// Sends SIGTERM.
    pub(crate) async fn terminate(&self) {
        let pid = self.child.id().expect("the server is running");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub(crate) async fn stop(mut self) {
        self.terminate().await;
        let status = timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server did not stop after SIGTERM")
            .unwrap();
        assert!(status.success(), "ledger serve exited with {status}");
    }
}

/// An API client for servers at `addrs`, with a store on `db` for checks behind their back
/// that sees the events as the servers do (personal fields opened with the tenants' keys).
pub(crate) async fn client(db: &Db, addrs: Vec<SocketAddr>) -> Api {
    let store = db.open(ledger_tests::options()).await.unwrap();
    let vault = ledger_commands::Vault::new(store.clone());
    let sealed = std::sync::Arc::new(ledger_commands::SealedStore::new(store, vault));
    Api::tcp(addrs, ADMIN.to_string(), sealed)
}

store_test!(databases: serve_over_http, |db| async move {
    db.migrate().await.unwrap();
    let server = serve(&db, Some(ADMIN)).await;
    assert_eq!(server.startup["admin_token"], "env");
    assert_eq!(
        server.startup["backend"],
        if db.kind == Kind::Sqlite { "sqlite" } else { "postgres" }
    );
    let api = client(&db, vec![server.addr]).await;
    api.req("GET", "/healthz").send().await.expect(200);
    api.req("GET", "/readyz").send().await.expect(200);
    let doc = api.req("GET", "/openapi.json").send().await;
    doc.expect(200);
    assert!(doc.body["paths"]["/v1/tenants/{id}/commands/acquire-lock"]["post"].is_object());

    let a = api.register("served-a").await;
    let b = api.register("served-b").await;
    let r = api
        .req("POST", cmd(a, "verify-payment"))
        .admin()
        .header("x-request-id", "served-1")
        .json(json!({"checkout_session_id": "cs"}))
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.header("x-request-id"), Some("served-1"));
    assert_eq!(r.header("etag"), Some("\"2\""));
    let token = api.tenant_token(a).await;
    api.req("GET", format!("/v1/tenants/{b}")).token(&token).send().await.expect_error(403, "forbidden");
    api.req("GET", format!("/v1/tenants/{a}")).send().await.expect_error(401, "unauthorized");
    let r = api
        .req("POST", cmd(a, "create-organization"))
        .admin()
        .header("if-match", "\"1\"")
        .send()
        .await;
    r.expect_error(409, "conflict");
    assert_eq!(r.body["current_seq"], 2);
    api.req("POST", "/v1/streams/order-1/events")
        .admin()
        .json(json!({"events": [{"type": "A", "data": {}}]}))
        .send()
        .await
        .expect_error(428, "expected_seq_required");
    api.req("POST", cmd(a, "acquire-lock"))
        .admin()
        .raw("{\"holder\":")
        .send()
        .await
        .expect_error(400, "invalid_json");
    let metrics = api.req("GET", "/metrics").send().await;
    metrics.expect(200);
    assert!(metrics.text.contains("ledger_http_requests_total{route=\"/v1/tenants\",method=\"POST\",status=\"201\"} 2"));
    server.stop().await;
});

store_test!(databases: the_served_log_equals_read_all, |db| async move {
    db.migrate().await.unwrap();
    let server = serve(&db, Some(ADMIN)).await;
    let api = client(&db, vec![server.addr]).await;
    log::fill(&api).await;
    let cases: [(&str, &[&str]); 4] = [
        ("", &[]),
        ("category=tenant", &["--category", "tenant"]),
        ("type=Placed", &["--type", "Placed"]),
        ("category=slug&type=SlugClaimed", &["--category", "slug", "--type", "SlugClaimed"]),
    ];
    for (query, args) in cases {
        let http: Vec<ledger_core::Envelope> = log::read_log(&api, ADMIN, query, 3)
            .await
            .iter()
            .map(log::envelope_of)
            .collect();
        let out = ledger_command(&db, None)
            .arg("read-all")
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cli: Vec<ledger_core::Envelope> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!cli.is_empty(), "{query}");
        assert_eq!(http, cli, "{query}");
    }
    log::log_equals_the_store(&api).await;
    server.stop().await;
});

store_test!(databases: the_served_audit_search_equals_the_cli, |db| async move {
    db.migrate().await.unwrap();
    let server = serve(&db, Some(ADMIN)).await;
    let api = client(&db, vec![server.addr]).await;
    audit_queries::audit_filters_on(&api, api.store.clone()).await;
    let last = api.log_len().await;
    let cases: [(&str, &[&str]); 5] = [
        ("", &[]),
        ("actor=ops", &["--actor", "ops"]),
        ("category=slug", &["--category", "slug"]),
        ("correlation_id=corr-a&order=desc", &["--correlation-id", "corr-a", "--order", "desc"]),
        ("on_behalf_of=alice%40example.com", &["--on-behalf-of", "alice@example.com"]),
    ];
    for (query, args) in cases {
        let http = audit_queries::search(&api, &format!("{query}&min_position={last}")).await;
        assert!(!http.is_empty(), "{query}");
        let out = ledger_command(&db, None)
            .args(["audit", "events", "--format", "json"])
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cli: Vec<u64> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["position"].as_u64().unwrap())
            .collect();
        assert_eq!(http, cli, "{query}");
        let csv = ledger_command(&db, None)
            .args(["audit", "events", "--format", "csv"])
            .args(args)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8(csv.stdout).unwrap();
        assert_eq!(text.lines().count(), cli.len() + 1, "a header and one line per event: {text}");
        assert!(text.starts_with("RECORDED,POSITION,STREAM,SEQ,TYPE,ACTOR,"), "{text}");
    }
    server.stop().await;
});

store_test!(databases: the_python_worker_processes_each_event_once, |db| async move {
    db.migrate().await.unwrap();
    let server = serve(&db, Some(ADMIN)).await;
    let api = client(&db, vec![server.addr]).await;
    let mut slugs = Vec::new();
    for i in 0..7 {
        let slug = format!("worker-{i}");
        api.register(&slug).await;
        slugs.push(slug);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/consumer_group_worker.py");
    // Three members, twice: the second round finds nothing new to process.
    for _ in 0..2 {
        let mut workers = Vec::new();
        for member in 0..3 {
            let child = Command::new("python3")
                .arg(script)
                .env("LEDGER_URL", format!("http://{}", server.addr))
                .env("LEDGER_TOKEN", ADMIN)
                .env("MEMBER", member.to_string())
                .env("MEMBERS", "3")
                .env("ONCE", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("python3 runs");
            workers.push(child.wait_with_output());
        }
        for worker in workers {
            let out = timeout(PATIENCE, worker).await.unwrap().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let mut emailed = Vec::new();
    for member in 0..3 {
        for e in api.events(&format!("emails-{member}")).await {
            emailed.push(e.data["slug"].as_str().unwrap().to_string());
        }
    }
    emailed.sort();
    assert_eq!(emailed, slugs, "each tenant gets exactly one welcome email");
    server.stop().await;
});

store_test!(databases: a_group_and_a_live_subscriber_under_writers, |db| async move {
    db.migrate().await.unwrap();
    let server = serve(&db, Some(ADMIN)).await;
    let api = client(&db, vec![server.addr]).await;
    let store = db.open(ledger_tests::options()).await.unwrap();
    crate::api_suite::subscriptions::group_under_writers_on(&api, store).await;
    server.stop().await;
});

store_test!(databases: serve_finishes_requests_in_flight, |db| async move {
    db.migrate().await.unwrap();
    let server = serve(&db, Some(ADMIN)).await;
    let body = serde_json::to_vec(&json!({"expected_seq": "no_stream", "events": [{"type": "Slow", "data": {"x": 1}}]})).unwrap();
    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/streams/slow-1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "the server still accepts connections after SIGTERM"
    );
    conn.write_all(&body[10..]).await.unwrap();
    let mut raw = String::new();
    timeout(PATIENCE, conn.read_to_string(&mut raw)).await.unwrap().unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "the request in flight did not finish: {raw}");
    let mut child = server.child;
    let status = timeout(PATIENCE, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    let store = db.open(ledger_tests::options()).await.unwrap();
    let seq = store.stream_seq(ledger_core::StreamName::parse("slow-1").unwrap()).await.unwrap();
    assert_eq!(seq.0, 1);
});

/// Without `LEDGER_ADMIN_TOKEN`, `serve` generates a token into a 0600 file beside the SQLite
/// database, says where, and reuses it on the next start; a token file and the variable together
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_generates_an_admin_token() {
    ledger_tests::backend::sqlite_db(|db| async move {
        let server = serve(&db, None).await;
        assert_eq!(server.startup["admin_token"], "generated");
        let path = std::path::PathBuf::from(server.startup["admin_token_file"].as_str().unwrap());
        let expected = format!("{}.admin-token", db.sqlite_path().unwrap().display());
        assert_eq!(path, std::path::PathBuf::from(expected));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
        let store = db.open(ledger_tests::options()).await.unwrap();
        let api = Api::tcp(vec![server.addr], token.clone(), store);
        api.get("/v1/streams/any-1/events").await.expect(200);
        api.req("GET", "/v1/streams/any-1/events")
            .token(ADMIN)
            .send()
            .await
            .expect_error(401, "unauthorized");
        server.stop().await;

        let again = serve(&db, None).await;
        assert_eq!(again.startup["admin_token"], "file");
        assert_eq!(
            again.startup["admin_token_file"],
            path.display().to_string()
        );
        again.stop().await;

        let path_text = path.display().to_string();
        let out = serve_command(&db, Some(ADMIN), &["--admin-token-file", &path_text])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stderr).lines().last().unwrap())
                .unwrap();
        assert_eq!(err["error"], "conflicting_admin_token");
    })
    .await;
}

/// Three servers on one PostgreSQL database, requests spread over them in turn.
mod three_servers {
    use super::*;

    /// The three races, each across three `ledger serve` processes sharing one database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        ledger_tests::backend::postgres_db(|db| async move {
            db.migrate().await.unwrap();
            let mut servers = Vec::new();
            for _ in 0..3 {
                servers.push(serve(&db, Some(ADMIN)).await);
            }
            let api = client(&db, servers.iter().map(|s| s.addr).collect()).await;
            races::race_acquire_lock_on(&api, 2).await;
            races::race_acquire_lock_on(&api, 50).await;
            races::race_complete_onboarding_on(&api, 50).await;
            races::race_register_slug_on(&api, 50).await;
            // A consumer group read and acked through three servers in turn, also while
            // writers append and a transaction commits late.
            crate::api_suite::subscriptions::group_on(&api).await;
            let store = db.open(ledger_tests::options()).await.unwrap();
            crate::api_suite::subscriptions::group_under_writers_on(&api, store).await;
            // A token issued through one server works on the others.
            let t = api.register("three-servers").await;
            let token = api.tenant_token(t).await;
            for _ in 0..3 {
                let r: Reply = api
                    .req("GET", format!("/v1/tenants/{t}"))
                    .token(&token)
                    .send()
                    .await;
                r.expect(200);
            }
            for s in servers {
                s.stop().await;
            }
        })
        .await;
    }
}

/// A port another process holds: `serve` exits 1 with `cannot_listen` before it creates the
/// database or a token file (it used to exit 2, the bad-input code, after creating both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_exits_1_and_creates_nothing() {
    ledger_tests::backend::sqlite_db(|db| async move {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = holder.local_addr().unwrap().to_string();
        let out = ledger_command(&db, None)
            .args(["serve", "--listen", &busy])
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let err: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
        assert_eq!(err["error"], "cannot_listen", "{err}");
        assert!(err["message"].as_str().unwrap().contains(&busy), "{err}");
        let file = db.sqlite_path().unwrap();
        let dir = file.parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "serve on a busy port left {left:?} behind");
        drop(holder);
    })
    .await;
}

/// `--lock-ttl 5s` is the policy in force: `GET /v1/tenants/{id}` shows it, a lock lasts five
/// seconds and then another holder may take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_ttl_flag_sets_the_policy() {
    ledger_tests::backend::sqlite_db(|db| async move {
        let server = start(serve_command(
            &db,
            Some(ADMIN),
            &["--lock-ttl", "5s", "--reveal-window", "30m"],
        ))
        .await;
        let api = client(&db, vec![server.addr]).await;
        let t = api.register("short-locks").await;
        let view = api.get(format!("/v1/tenants/{t}")).await;
        view.expect(200);
        assert_eq!(
            view.body["policy"],
            json!({"lock_ttl_seconds": 5, "reveal_window_seconds": 1800})
        );
        let doc = api.get("/openapi.json").await;
        assert!(
            doc.body["components"]["schemas"]["PolicyView"]["properties"]["lock_ttl_seconds"]
                .is_object()
        );

        let first = api
            .command(t, "acquire-lock", json!({"holder": "tab-a"}))
            .await;
        first.expect(200);
        let lock = &first.body["state"]["lock"];
        let at = |k: &str| chrono::DateTime::parse_from_rfc3339(lock[k].as_str().unwrap()).unwrap();
        assert_eq!(
            at("expires_at") - at("acquired_at"),
            chrono::Duration::seconds(5)
        );
        api.command(t, "acquire-lock", json!({"holder": "tab-b"}))
            .await
            .expect_error(409, "lock_held");
        let expires = at("expires_at").with_timezone(&chrono::Utc);
        let wait = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(300)).await;
        let taken = api
            .command(t, "acquire-lock", json!({"holder": "tab-b"}))
            .await;
        taken.expect(200);
        assert_eq!(taken.body["state"]["lock"]["holder"], "tab-b");
        server.stop().await;
    })
    .await;
}

/// On an empty PostgreSQL database `serve` names the complete fix (without the URL's
/// password), and `serve --migrate` starts there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_migrate_starts_on_an_empty_postgres_database() {
    ledger_tests::backend::postgres_db(|db| async move {
        let secret = crate::cli::with_password(&db, "s3cret");
        let out = serve_command(&secret, Some(ADMIN), &[])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let err: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
        assert_eq!(err["error"], "schema_mismatch", "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("run `ledger migrate --database-url {}`", db.url)),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");

        let server = start(serve_command(&secret, Some(ADMIN), &["--migrate"])).await;
        let api = client(&db, vec![server.addr]).await;
        api.register("migrated-on-start").await;
        server.stop().await;
    })
    .await;
}
