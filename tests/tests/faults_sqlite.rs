//! SQLite faults a server comes back from by itself, without a restart: a full disk (the file
//! capped at its size with `max_page_count`, so writes fail with `SQLITE_FULL` as on a full
//! device), and a database file that is read-only.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_api::{ApiConfig, AppState, app};
use ledger_core::EventStore;
use ledger_projector::{Projector, Signal, SignalingStore};
use ledger_read_models::Logged;
use ledger_sqlite::SqliteStore;
use ledger_tests::backend::sqlite_db;
use ledger_tests::sqlite::TempDb;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::api_suite::client::{ADMIN, Api, Reply};
use crate::serve::{client, serve_command, start};

/// Longest wait for the server to come back once the fault is gone ("within seconds"; the
/// margin is for a loaded machine, the runners' backoff tops out at 5 s).
const RECOVERY: Duration = Duration::from_secs(20);

/// Asks `check` every 50 ms until it answers, at most [`RECOVERY`]; panics with `what` and
/// the last answer otherwise.
async fn eventually<T>(
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return (value, started.elapsed()),
            Err(last) if started.elapsed() > RECOVERY => {
                panic!("{what} did not happen within {RECOVERY:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A registration, whatever the answer.
async fn register(api: &Api, slug: &str) -> Reply {
    api.req("POST", "/v1/tenants")
        .admin()
        .json(json!({"slug": slug, "name": format!("{slug} Ltd")}))
        .send()
        .await
}

/// Once the fault is gone: registers `slug` as soon as the server takes it, then checks that
/// the server is ready and takes a command on the new tenant; returns how long the
/// registration took to succeed.
async fn works_again(api: &Api, slug: &str) -> Duration {
    let (tenant, took) = eventually("a registration", async || {
        let reply = register(api, slug).await;
        match reply.status.as_u16() {
            201 => Ok(reply.body["tenant_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap()),
            _ => Err(reply.text),
        }
    })
    .await;
    api.req("GET", "/readyz").send().await.expect(200);
    let body = json!({"checkout_session_id": "cs"});
    api.command(tenant, "verify-payment", body)
        .await
        .expect(200);
    took
}

/// Panics unless `reply` is 503 `unavailable` saying the database cannot be written because of
/// `reason`.
#[track_caller]
fn cannot_write(reply: &Reply, reason: &str) {
    reply.expect_error(503, "unavailable");
    let message = reply.body["message"].as_str().unwrap();
    assert_eq!(message, format!("the database cannot be written: {reason}"));
}

/// The projections' statuses.
async fn projections(api: &Api) -> Vec<Value> {
    let reply = api.get("/v1/projections").await;
    reply.expect(200);
    reply.body["items"].as_array().unwrap().clone()
}

/// The API of one SQLite store in process, with projection runners that the test starts and
/// stops (`ledger serve` runs them all the time).
struct InProcess {
    api: Api,
    projector: Projector<Logged>,
    runners: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl InProcess {
    fn new(store: &SqliteStore) -> Self {
        let signal = Signal::new();
        let events: Arc<dyn EventStore> = Arc::new(store.clone());
        let signaled: Arc<dyn EventStore> =
            Arc::new(SignalingStore::new(events.clone(), signal.clone()));
        let projector = Projector::new(
            Arc::new(store.clone()),
            Arc::new(store.projections()),
            ledger_read_models::catalog(),
        )
        .with_signal(signal);
        let state = AppState::new(signaled, ADMIN, ApiConfig::default())
            .with_projections(projector.clone());
        Self {
            api: Api::from_router(app(state), events),
            projector,
            runners: None,
        }
    }

    fn start_runners(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let projector = self.projector.clone();
        let task = tokio::spawn(async move {
            let names = projector.catalog().names();
            projector
                .run(&names, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        self.runners = Some((stop, task));
    }

    async fn stop_runners(&mut self) {
        let (stop, task) = self.runners.take().expect("the runners run");
        let _ = stop.send(());
        task.await.unwrap();
    }

    /// Waits until every projection is live, applied to the end of the log.
    async fn caught_up(&self) {
        eventually("the projections catching up", async || {
            let all = projections(&self.api).await;
            let done = all
                .iter()
                .all(|p| p["lag"] == 0 && p["state"] == "live" && p["error"].is_null());
            if done {
                Ok(())
            } else {
                Err(json!(all).to_string())
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recovers_from_a_full_disk() {
    let db = TempDb::new();
    let store = SqliteStore::open(&db.url(), ledger_tests::options())
        .await
        .unwrap();
    let mut served = InProcess::new(&store);
    let api = served.api.clone();
    served.start_runners();
    for i in 0..5 {
        api.register(&format!("early-{i}")).await;
    }
    served.caught_up().await;
    // Events the runners have not applied yet, then the file capped at its size.
    served.stop_runners().await;
    for i in 0..200 {
        api.register(&format!("behind-{i}")).await;
    }
    store.set_page_limit(Some(1)).await.unwrap();

    // Writes answer 503 once the last free page is taken, and readiness says why.
    let mut refused = None;
    for i in 0..500 {
        let reply = register(&api, &format!("full-{i}")).await;
        if reply.status != 201 {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the capped file filled up");
    refused.expect_error(503, "unavailable");
    register(&api, "full-again")
        .await
        .expect_error(503, "unavailable");
    cannot_write(&api.req("GET", "/readyz").send().await, "disk full");

    // A runner that cannot apply says so instead of `live` (the tenants' rows need pages; the
    // other projections have no rows for registrations and only move their checkpoints).
    served.start_runners();
    eventually("the runner reporting its failure", async || {
        let all = projections(&api).await;
        let phase = all.iter().find(|p| p["name"] == "tenant_phase").unwrap();
        let reported = phase["state"] == "failing" && phase["error"] == "unavailable";
        let behind_and_live = all.iter().any(|p| p["lag"] != 0 && p["state"] == "live");
        if reported && !behind_and_live {
            Ok(())
        } else {
            Err(json!(all).to_string())
        }
    })
    .await;

    // Space again: every route and every projection works again, without a restart.
    store.set_page_limit(None).await.unwrap();
    let freed = Instant::now();
    let registered = works_again(&api, "after-the-fault").await;
    served.caught_up().await;
    let caught_up = freed.elapsed();
    let listed = api.get("/v1/tenants?limit=1000").await;
    listed.expect(200);
    let slugs: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["slug"].as_str())
        .collect();
    assert!(slugs.contains(&"behind-199"), "{slugs:?}");
    assert!(slugs.contains(&"after-the-fault"), "{slugs:?}");
    eprintln!(
        "disk full: first registration {registered:?} and caught up {caught_up:?} after the cap was lifted"
    );
    served.stop_runners().await;
}

/// `cmd` run where file permissions bind it: as is for a user, in a user namespace of its own
/// for root (which otherwise writes to read-only files).
fn unprivileged(cmd: Command) -> Command {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return cmd;
    }
    let inner = cmd.as_std();
    let mut wrapped = Command::new("unshare");
    wrapped
        .arg("--user")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    wrapped
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recovers_from_a_read_only_file() {
    sqlite_db(|db| async move {
        db.migrate().await.unwrap();
        let path = db.sqlite_path().unwrap();
        set_mode(&path, 0o444);
        let mut command = unprivileged(serve_command(&db, Some(crate::serve::ADMIN), &[]));
        command.env("RUST_LOG", "warn");
        let mut server = start(command).await;
        // The warning comes before the startup line, so it is in the log by now.
        let mut log = BufReader::new(server.child.stderr.take().unwrap()).lines();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(5), log.next_line()).await;
            let Ok(Ok(Some(line))) = line else {
                panic!("no warning at start that the database cannot be written ({line:?})");
            };
            if line.contains("cannot be written") {
                assert!(line.contains("database is read-only"), "{line}");
                break;
            }
        }
        // Keep reading the log so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        let api = client(&db, vec![server.addr]).await;

        cannot_write(
            &api.req("GET", "/readyz").send().await,
            "database is read-only",
        );
        register(&api, "read-only")
            .await
            .expect_error(503, "unavailable");

        set_mode(&path, 0o644);
        let took = works_again(&api, "writable").await;
        eprintln!("read-only: first registration {took:?} after the file was made writable");
        server.stop().await;
    })
    .await;
}
