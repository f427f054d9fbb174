//! PostgreSQL faults against a real `ledger serve` process: the database going away behind a
//! proxy the test cuts (requests fail fast with 503 and `Retry-After`, and everything recovers
//! without a restart), and clients that abort requests mid-flight (no connection goes back to
//! the pool busy, no append is half there).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::EventStore;
use ledger_tests::backend::{Db, Kind};
use ledger_tests::pg;
use ledger_tests::proxy::Proxy;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use uuid::Uuid;

use crate::api_suite::client::{Api, Reply};
use crate::serve;

/// The admin token of the servers.
const ADMIN: &str = "faults-test-admin-token-0123456789";

/// How long a server may take to start, to stop, or the database to come back.
const PATIENCE: Duration = Duration::from_secs(30);

/// The longest a request may take to fail while the database is down: well under the 10 s a
/// request waited for a connection before, with room for a loaded machine.
const FAIL_FAST: Duration = Duration::from_secs(5);

/// The log lines of a connection that went back to the pool busy.
const BUSY_RETURN_WARNINGS: [&str; 2] = [
    "there is no transaction in progress",
    "error occurred while testing the connection on-release",
];

/// A running `ledger serve` whose log goes to a file.
struct Served {
    server: serve::Served,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts `ledger serve` on `url` with `RUST_LOG=warn` and waits for its startup line.
    async fn start(url: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let db = Db {
            kind: Kind::Postgres,
            url: url.to_string(),
        };
        let mut command = serve::serve_command(&db, Some(ADMIN), &[]);
        command
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap());
        let server = serve::start(command).await;
        Served {
            addr: server.addr,
            server,
            log,
            _dir: dir,
        }
    }

    /// Stops it with SIGTERM and returns its log.
    async fn stop(mut self) -> String {
        self.server.terminate().await;
        let status = timeout(PATIENCE, self.server.child.wait())
            .await
            .unwrap()
            .unwrap();
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

/// A tiny deterministic generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One request the storm sends, kept to send again.
#[derive(Clone)]
enum Sent {
    /// Two events with known ids appended to a shared stream.
    Append { stream: String, ids: [Uuid; 2] },
    /// A registration with an Idempotency-Key.
    Register { slug: String, key: String },
}

impl Sent {
    /// The request: method, path, headers, JSON body.
    fn parts(&self) -> (&'static str, String, Vec<(&'static str, String)>, Value) {
        match self {
            Sent::Append { stream, ids } => (
                "POST",
                format!("/v1/streams/{stream}/events"),
                Vec::new(),
                json!({"expected_seq": "any", "events": [
                    {"event_id": ids[0], "type": "First", "data": {}},
                    {"event_id": ids[1], "type": "Second", "data": {}},
                ]}),
            ),
            Sent::Register { slug, key } => (
                "POST",
                "/v1/tenants".to_string(),
                vec![("idempotency-key", key.clone())],
                json!({"slug": slug, "name": "Aborted Ltd"}),
            ),
        }
    }

    /// Sends it and gives up on the answer after `after`, dropping the connection.
    async fn abort(&self, addr: SocketAddr, after: Duration) {
        let (method, path, headers, body) = self.parts();
        let body = serde_json::to_vec(&body).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&body).await.unwrap();
        tokio::time::sleep(after).await;
    }

    /// Sends it to the end; it must succeed (a replay when the aborted one got through).
    async fn complete(&self, api: &Api) -> Reply {
        let (method, path, headers, body) = self.parts();
        let mut req = api.req(method, path).admin().json(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await;
        assert!(
            r.status.is_success(),
            "a re-sent request failed: {}",
            r.text
        );
        r
    }
}

/// Clients that give up on half their requests after 1-40 ms (appends racing on four streams,
/// registrations) leave no connection busy in the pool: the server logs no warning about one,
/// every request sent again to the end succeeds, and every append is there whole, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_requests_leave_the_pool_clean() {
    pg::with_database(true, |url| async move {
        let server = Served::start(&url).await;
        let api = client(&server, &url).await;
        let addr = server.addr;
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..16u64 {
            let api = api.clone();
            clients.spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c + 1));
                let mut sent = Vec::new();
                for i in 0..40 {
                    let request = if rng.below(5) < 3 {
                        Sent::Append {
                            stream: format!("hot-{}", rng.below(4)),
                            ids: [Uuid::now_v7(), Uuid::now_v7()],
                        }
                    } else {
                        Sent::Register {
                            slug: format!("aborted-{c}-{i}"),
                            key: format!("abort-{c}-{i}"),
                        }
                    };
                    if rng.below(2) == 0 {
                        let after = Duration::from_millis(1 + rng.below(40));
                        request.abort(addr, after).await;
                    } else {
                        request.complete(&api).await;
                    }
                    sent.push(request);
                }
                sent
            });
        }
        let sent: Vec<Sent> = clients.join_all().await.into_iter().flatten().collect();
        // Appends whose clients left may still be running: the re-sends queue behind them.
        let mut appended: BTreeMap<String, Vec<[Uuid; 2]>> = BTreeMap::new();
        for request in &sent {
            let r = request.complete(&api).await;
            match request {
                Sent::Append { stream, ids } => {
                    appended.entry(stream.clone()).or_default().push(*ids)
                }
                Sent::Register { slug, .. } => {
                    let tenant = r.body["tenant_id"].as_str().unwrap();
                    let claims = api.events(&format!("slug-{slug}")).await;
                    assert_eq!(
                        claims.len(),
                        1,
                        "slug {slug} claimed {} times",
                        claims.len()
                    );
                    assert_eq!(claims[0].data["tenant_id"], tenant);
                    let events = api.events(&format!("tenant-{tenant}")).await;
                    assert_eq!(events.len(), 1, "tenant {tenant}: {events:?}");
                }
            }
        }
        for (stream, batches) in &appended {
            let events = api.events(stream).await;
            let seqs: Vec<u64> = events.iter().map(|e| e.seq.0).collect();
            assert_eq!(
                seqs,
                (1..=events.len() as u64).collect::<Vec<_>>(),
                "{stream} has a gap"
            );
            let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
            assert_eq!(
                ids.iter().collect::<HashSet<_>>().len(),
                ids.len(),
                "{stream} holds an event twice"
            );
            assert_eq!(
                ids.len(),
                batches.len() * 2,
                "{stream} holds events nobody sent"
            );
            for [first, second] in batches {
                let at = ids
                    .iter()
                    .position(|id| id == first)
                    .expect("an acknowledged event is missing");
                assert_eq!(
                    ids.get(at + 1),
                    Some(second),
                    "a batch of {stream} was split"
                );
            }
        }
        api.req("GET", "/readyz").send().await.expect(200);
        let log = server.stop().await;
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| BUSY_RETURN_WARNINGS.iter().any(|w| l.contains(w)))
            .collect();
        println!(
            "{} requests, {} warnings about busy connections",
            sent.len(),
            warnings.len()
        );
        assert!(
            warnings.is_empty(),
            "{} warnings, e.g. {:?}",
            warnings.len(),
            &warnings[..warnings.len().min(3)]
        );
    })
    .await;
}

/// A held transaction whose append was dropped midway commits nothing: the append ran to its
/// end on its own task and rolled the transaction back, so the commit fails and the stream stays
/// empty; the pool is unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_append_was_dropped_commits_nothing() {
    ledger_tests::backend::postgres(ledger_tests::options(), |store| async move {
        let stream = ledger_tests::fixtures::stream("held-1");
        let mut tx = store.begin().await.unwrap();
        let events = ledger_tests::fixtures::evs("Held", 3);
        let dropped = timeout(
            Duration::ZERO,
            tx.append(stream.clone(), ledger_core::ExpectedSeq::NoStream, events),
        )
        .await;
        assert!(
            dropped.is_err(),
            "the append finished before it was dropped"
        );
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.code(), "internal");
        assert_eq!(store.stream_seq(stream.clone()).await.unwrap().0, 0);
        let again = ledger_tests::fixtures::evs("Held", 1);
        store
            .append(stream.clone(), ledger_core::ExpectedSeq::NoStream, again)
            .await
            .unwrap();
        assert_eq!(store.stream_seq(stream).await.unwrap().0, 1);
    })
    .await;
}

/// A database whose sessions are read-only: `/readyz`'s write check names it and an append
/// answers `unavailable` (503), not `internal`; a database that accepts writes has no fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_a_write_fault() {
    pg::with_database(true, |url| async move {
        let name = url.rsplit('/').next().unwrap().to_string();
        let store = ledger_postgres::PgStore::connect(&url, ledger_tests::options())
            .await
            .unwrap();
        assert_eq!(store.write_fault().await, None);
        drop(store);

        let mut admin = pg::admin_connection().await;
        let set = format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = on");
        sqlx::raw_sql(sqlx::AssertSqlSafe(set))
            .execute(&mut admin)
            .await
            .unwrap();
        let store = ledger_postgres::PgStore::connect(&url, ledger_tests::options())
            .await
            .unwrap();
        let fault = store
            .write_fault()
            .await
            .expect("a read-only database is a fault");
        assert!(fault.contains("read-only"), "{fault}");
        let stream = ledger_core::StreamName::parse("order-1").unwrap();
        let refused = store
            .append(
                stream,
                ledger_core::ExpectedSeq::Any,
                vec![ledger_core::NewEvent::new("Placed", json!({}))],
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "unavailable", "{refused}");
        drop(store);
        let reset = format!("ALTER DATABASE \"{name}\" RESET default_transaction_read_only");
        sqlx::raw_sql(sqlx::AssertSqlSafe(reset))
            .execute(&mut admin)
            .await
            .unwrap();
    })
    .await;
}
