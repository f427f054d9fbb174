//! PostgreSQL faults against a real `ledger serve` process: the database going away behind a
//! proxy the test cuts (requests fail fast with 503 and `Retry-After`, and everything recovers
//! without a restart).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_tests::pg;
use ledger_tests::proxy::Proxy;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

use crate::api_suite::client::{Api, Reply};

/// The admin token of the servers.
const ADMIN: &str = "faults-test-admin-token-0123456789";

/// How long a server may take to start, to stop, or the database to come back.
const PATIENCE: Duration = Duration::from_secs(30);

/// The longest a request may take to fail while the database is down: well under the 10 s a
/// request waited for a connection before, with room for a loaded machine.
const FAIL_FAST: Duration = Duration::from_secs(5);

/// A running `ledger serve` whose log goes to a file.
struct Served {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Served {
    /// Starts `ledger serve` on `url` with `RUST_LOG=warn` and waits for its startup line.
    async fn start(url: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-under-test"))
            .args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("LEDGER_DATABASE_URL")
            .env("LEDGER_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start ledger serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = match timeout(PATIENCE, stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "ledger serve did not start ({other:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        let startup: Value = serde_json::from_str(&line).unwrap();
        Served {
            child,
            addr: startup["listening"].as_str().unwrap().parse().unwrap(),
            log,
            _dir: dir,
            _stdout: stdout,
        }
    }

    /// Stops it with SIGTERM and returns its log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("the server is running").to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
        assert!(killed.unwrap().success());
        let status = timeout(PATIENCE, self.child.wait()).await.unwrap().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(status.success(), "ledger serve exited with {status}: {log}");
        log
    }
}

/// A client of `server` (admin token) with a store on `url` for checks behind its back.
async fn client(server: &Served, url: &str) -> Api {
    let store = ledger_postgres::PgStore::connect(url, ledger_tests::options())
        .await
        .unwrap();
    Api::tcp(vec![server.addr], ADMIN.to_string(), Arc::new(store))
}

/// An append of one event to `stream`, expecting any seq.
async fn append(api: &Api, stream: &str) -> Reply {
    api.req("POST", format!("/v1/streams/{stream}/events"))
        .admin()
        .json(json!({"expected_seq": "any", "events": [{"type": "Probe", "data": {}}]}))
        .send()
        .await
}

/// While PostgreSQL is unreachable (refusing connections, or accepting them and never
/// answering), every request answers 503 `unavailable` with `Retry-After` within seconds, not
/// after a 10 s pool timeout, and `/readyz` within one; once it is back, requests succeed again
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_fast_and_recovers() {
    pg::with_database(true, |url| async move {
        let (mut proxy, via_proxy) = Proxy::in_front_of(&url).await;
        let server = Served::start(&via_proxy).await;
        let api = client(&server, &url).await;
        append(&api, "probe-1").await.expect(200);
        api.req("GET", "/readyz").send().await.expect(200);

        proxy.stop().await;
        let requests: [(&str, &str, Option<Value>); 4] = [
            ("POST", "/v1/streams/probe-1/events", Some(json!({"expected_seq": "any", "events": [{"type": "Probe", "data": {}}]}))),
            ("GET", "/v1/streams/probe-1/events", None),
            ("POST", "/v1/tenants", Some(json!({"slug": "while-down", "name": "Down Ltd"}))),
            ("POST", "/v1/streams/probe-2/events", Some(json!({"expected_seq": "any", "events": [{"type": "Probe", "data": {}}]}))),
        ];
        let mut slowest = Duration::ZERO;
        for (method, uri, body) in requests {
            let mut req = api.req(method, uri).admin();
            if let Some(body) = body {
                req = req.json(body);
            }
            let started = Instant::now();
            let r = req.send().await;
            let took = started.elapsed();
            r.expect_error(503, "unavailable");
            let retry_after: u64 = r
                .header("retry-after")
                .unwrap_or_else(|| panic!("a 503 without Retry-After: {:?}", r.headers))
                .parse()
                .expect("Retry-After in seconds");
            assert!(retry_after >= 1);
            assert!(took < FAIL_FAST, "{method} {uri} took {took:?} to fail with the database down");
            slowest = slowest.max(took);
        }
        let started = Instant::now();
        let ready = api.req("GET", "/readyz").send().await;
        let readyz = started.elapsed();
        ready.expect_error(503, "unavailable");
        assert!(ready.header("retry-after").is_some());
        assert!(readyz < Duration::from_secs(3), "/readyz took {readyz:?} with the database down");

        // A host that accepts connections and never answers bounds requests the same way.
        proxy.black_hole().await.unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let r = append(&api, "probe-1").await;
            let took = started.elapsed();
            r.expect_error(503, "unavailable");
            assert!(took < FAIL_FAST, "an append took {took:?} with the database not answering");
            slowest = slowest.max(took);
        }

        proxy.resume().await.unwrap();
        let back = Instant::now();
        while append(&api, "probe-1").await.status != 200 {
            assert!(back.elapsed() < PATIENCE, "the server did not recover after the database came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recovered = back.elapsed();
        api.req("GET", "/readyz").send().await.expect(200);
        api.register("after-outage").await;
        println!("database down: slowest request {slowest:?}, /readyz {readyz:?}; recovered {recovered:?} after it came back");
        server.stop().await;
    })
    .await;
}
