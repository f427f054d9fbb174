//! Projections on every backend: incremental batches equal a rebuild equal the domain's fold; a
//! transaction that commits late reaches every projection; rebuilds while writers append; a
//! version bump rebuilds; `--verify` finds a hand-altered row; a killed runner resumes without
//! applying an event twice or skipping one; two runner processes on one PostgreSQL database.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ledger_core::{EventStore, ExpectedSeq, Position, StoreOptions, StreamName};
use ledger_memory::MemoryStore;
use ledger_postgres::PgStore;
use ledger_projections::generate::{Append, Rng, history, random_steps};
use ledger_projections::{
    Batch, Checkpoint, Decoded, Kind, MemoryProjections, ProjectionStore, Projector,
    ProjectorOptions, Query, Rows, Signal, SignalingStore, Slot, reference,
};
use ledger_sqlite::SqliteStore;
use ledger_tests::Store;
use ledger_tests::backend::{Db, Kind as Backend};
use ledger_tests::fixtures::{evs, seq_of, whole_log};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A store and its projections.
struct Env {
    store: Store,
    projections: Arc<dyn ProjectionStore>,
    /// The database, for the cases that need it (`None` on the memory backend).
    db: Option<Db>,
}

impl Env {
    fn events(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    fn projector(&self, batch_size: usize) -> Projector {
        Projector::new(self.events(), self.projections.clone()).with_options(ProjectorOptions {
            batch_size,
            rebuild_batch_size: batch_size,
            // Pages that do not line up with batches: both boundaries get crossed.
            read_page: batch_size + batch_size / 2 + 1,
            ..ProjectorOptions::default()
        })
    }
}

/// Opens a store and its projections on a fresh database (migrating it).
async fn open(db: &Db) -> (Store, Arc<dyn ProjectionStore>) {
    db.migrate()
        .await
        .unwrap_or_else(|e| panic!("migrating {db}: {e}"));
    match db.kind {
        Backend::Sqlite => {
            let s = SqliteStore::open(&db.url, ledger_tests::options())
                .await
                .unwrap();
            let p = Arc::new(s.projections());
            (Arc::new(s), p)
        }
        Backend::Postgres => {
            let s = PgStore::connect(&db.url, ledger_tests::options())
                .await
                .unwrap();
            let p = Arc::new(s.projections());
            (Arc::new(s), p)
        }
    }
}

/// One test per backend (`memory`, `sqlite`, `postgres`) of a case taking an [`Env`].
macro_rules! projection_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                let store: Store = Arc::new(MemoryStore::with_options(ledger_tests::options()));
                let projections = Arc::new(MemoryProjections::new(store.clone()));
                ($body)(Env {
                    store,
                    projections,
                    db: None,
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ledger_tests::backend::sqlite_db(|db| async move {
                    let (store, projections) = open(&db).await;
                    ($body)(Env {
                        store,
                        projections,
                        db: Some(db),
                    })
                    .await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ledger_tests::backend::postgres_db(|db| async move {
                    let (store, projections) = open(&db).await;
                    ($body)(Env {
                        store,
                        projections,
                        db: Some(db),
                    })
                    .await;
                })
                .await;
            }
        }
    };
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap()
}

/// Appends a generated history; returns the position of its last event.
async fn append_all(store: &dyn EventStore, appends: Vec<Append>) -> Position {
    let mut last = Position::START;
    for a in appends {
        last = store
            .append(a.stream, a.expected, a.events)
            .await
            .unwrap()
            .position;
    }
    last
}

/// The rows the whole log must give, by the domain's fold.
async fn expected(store: &dyn EventStore, kind: Kind) -> Rows {
    let changes: Vec<_> = whole_log(store)
        .await
        .into_iter()
        .filter_map(|e| Decoded::from_envelope(e).change)
        .collect();
    reference(kind, &changes)
}

/// Every row of a live projection.
async fn live_rows(projections: &dyn ProjectionStore, kind: Kind) -> Rows {
    projections
        .query(&Query::page(kind, Slot::Live, None, usize::MAX >> 1))
        .await
        .unwrap()
}

/// Asserts every live projection equals the fold of the whole log, having applied each event
/// exactly once.
async fn assert_projected(env: &Env) {
    let log = whole_log(&*env.store).await.len() as u64;
    for kind in Kind::ALL {
        let cp = live(&*env.projections, kind).await;
        assert_eq!(
            cp.events, log,
            "{kind}: applied {} of {log} events",
            cp.events
        );
        assert_eq!(
            live_rows(&*env.projections, kind).await,
            expected(&*env.store, kind).await,
            "{kind} differs from the fold of the log"
        );
    }
}

async fn live(projections: &dyn ProjectionStore, kind: Kind) -> Checkpoint {
    projections
        .checkpoint(kind, Slot::Live)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{kind} has no live copy"))
}

/// Runs the live runners of `projector` in the background until the sender is used or dropped.
fn run_in_background(projector: &Projector) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let projector = projector.clone();
    let task = tokio::spawn(async move {
        projector
            .run(&Kind::ALL, async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}

projection_test!(
    random_batches_equal_rebuild_equal_fold,
    |env: Env| async move {
        let mut rng = Rng::new(42);
        let appends = history(1, 12, &random_steps(42, 12, 700), start());
        let chunk = appends.len().div_ceil(4);
        for part in appends.chunks(chunk) {
            append_all(&*env.store, part.to_vec()).await;
            for kind in Kind::ALL {
                let batch = 1 + rng.below(40) as usize;
                env.projector(batch).catch_up(kind).await.unwrap();
            }
        }
        assert_projected(&env).await;
        let incremental: Vec<Rows> =
            futures::future::join_all(Kind::ALL.map(|k| live_rows(&*env.projections, k))).await;
        let report = env
            .projector(17)
            .rebuild(&Kind::ALL, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.events, whole_log(&*env.store).await.len() as u64);
        assert_projected(&env).await;
        for (kind, before) in Kind::ALL.into_iter().zip(incremental) {
            assert_eq!(live_rows(&*env.projections, kind).await, before, "{kind}");
            let verified = env.projector(64).verify(kind, &mut |_| {}).await.unwrap();
            assert!(verified.is_clean(), "{verified:?}");
        }
    }
);

projection_test!(
    late_commit_reaches_every_projection,
    |env: Env| async move {
        let signal = Signal::new();
        let store: Arc<dyn EventStore> =
            Arc::new(SignalingStore::new(env.events(), signal.clone()));
        let projector = env.projector(5).with_signal(signal);
        let (stop, runner) = run_in_background(&projector);
        let mut positions =
            vec![append_all(&*store, history(1, 3, &random_steps(1, 3, 60), start())).await];

        // A transaction appends a tenant's events and holds them while others append and commit.
        let late = history(2, 1, &random_steps(2, 1, 30), start());
        let mut tx = env.store.begin().await.unwrap();
        for a in late.into_iter().filter(|a| a.stream.category() == "tenant") {
            positions.push(
                tx.append(a.stream, a.expected, a.events)
                    .await
                    .unwrap()
                    .position,
            );
        }
        let others = {
            let store = store.clone();
            tokio::spawn(async move {
                append_all(&*store, history(3, 3, &random_steps(3, 3, 60), start())).await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.commit().await.unwrap();
        positions.push(others.await.unwrap());
        for kind in Kind::ALL {
            for p in &positions {
                projector
                    .wait_for(kind, *p, Duration::from_secs(60))
                    .await
                    .unwrap();
            }
        }
        // Let the runners settle on the end of the log, then compare.
        let end = append_all(&*store, history(4, 1, &random_steps(4, 1, 3), start())).await;
        for kind in Kind::ALL {
            projector
                .wait_for(kind, end, Duration::from_secs(60))
                .await
                .unwrap();
        }
        stop.send(()).unwrap();
        runner.await.unwrap();
        assert_projected(&env).await;
    }
);

projection_test!(rebuild_while_writers_append, |env: Env| async move {
    let signal = Signal::new();
    let store: Arc<dyn EventStore> = Arc::new(SignalingStore::new(env.events(), signal.clone()));
    let projector = env.projector(9).with_signal(signal);
    append_all(&*store, history(1, 8, &random_steps(1, 8, 300), start())).await;
    let (stop, runner) = run_in_background(&projector);
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (store, writing) = (store.clone(), writing.clone());
            tokio::spawn(async move {
                let mut last = Position::START;
                let mut round = 0;
                while writing.load(Ordering::SeqCst) || round < 2 {
                    let run = 100 + w * 1000 + round;
                    last = append_all(&*store, history(run, 2, &random_steps(run, 2, 12), start()))
                        .await;
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                last
            })
        })
        .collect();
    let report = projector.rebuild(&Kind::ALL, &mut |_| {}).await.unwrap();
    assert!(report.events > 0);
    writing.store(false, Ordering::SeqCst);
    let mut ends = Vec::new();
    for w in writers {
        ends.push(w.await.unwrap());
    }
    for kind in Kind::ALL {
        for end in &ends {
            projector
                .wait_for(kind, *end, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    stop.send(()).unwrap();
    runner.await.unwrap();
    assert_projected(&env).await;

    // A second rebuild reuses the names of the indexes the first left on the live tables.
    projector.rebuild(&Kind::ALL, &mut |_| {}).await.unwrap();
    assert_projected(&env).await;
    if let Some(db) = &env.db {
        let indexes = match db.kind {
            Backend::Postgres => {
                "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'"
            }
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index'",
        };
        let count =
            |names: &str| format!("SELECT count(*) FROM ({indexes}) AS i WHERE name {names}");
        let live = "IN ('tenant_phase_phase_idx', 'onboarding_locks_unreleased_idx', \
                    'pending_syncs_status_idx')";
        assert_eq!(db.scalar(&count(live)).await, 3, "the live tables' indexes");
        assert_eq!(db.scalar(&count("LIKE '%rebuild%'")).await, 0);
    }
});

/// Runs one SQL statement on the case's database.
async fn sql(env: &Env, statement: &str) -> u64 {
    let db = env.db.as_ref().expect("a database backend");
    db.execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
}

/// The database cases: the memory backend has no tables to alter by hand.
macro_rules! database_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ledger_tests::backend::sqlite_db(|db| async move {
                    let (store, projections) = open(&db).await;
                    ($body)(Env {
                        store,
                        projections,
                        db: Some(db),
                    })
                    .await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ledger_tests::backend::postgres_db(|db| async move {
                    let (store, projections) = open(&db).await;
                    ($body)(Env {
                        store,
                        projections,
                        db: Some(db),
                    })
                    .await;
                })
                .await;
            }
        }
    };
}

database_test!(a_version_bump_rebuilds_on_start, |env: Env| async move {
    append_all(
        &*env.store,
        history(1, 5, &random_steps(5, 5, 200), start()),
    )
    .await;
    for kind in Kind::ALL {
        env.projector(50).catch_up(kind).await.unwrap();
    }
    // Tables of an older version, with a row nobody would derive from the log.
    sql(
        &env,
        "UPDATE projection_checkpoints SET version = 0 WHERE name = 'tenant_phase'",
    )
    .await;
    assert_eq!(sql(&env, "UPDATE tenant_phase SET name = 'stale'").await, 5);
    let cp = env.projector(50).catch_up(Kind::TenantPhase).await.unwrap();
    assert_eq!(cp.version, Kind::TenantPhase.version());
    assert_projected(&env).await;
});

/// A `ledger` process on `db`.
fn ledger(db: &Db, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-under-test"));
    cmd.arg("--database-url")
        .arg(&db.url)
        .args(args)
        .env_remove("LEDGER_DATABASE_URL")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `ledger` to the end: exit code, stdout, stderr.
async fn run(db: &Db, args: &[&str]) -> (i32, String, String) {
    let out = ledger(db, args).output().await.expect("ledger runs");
    (
        out.status.code().expect("ledger exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Starts `ledger project` and waits for its startup line; returns the process and its owner id.
async fn project(db: &Db, batch: usize) -> (Child, String) {
    let mut child = ledger(db, &["project", "--batch-size", &batch.to_string()])
        .spawn()
        .expect("ledger project starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("ledger project says it runs")
        .unwrap()
        .expect("a startup line");
    let startup: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        startup["projecting"].as_array().unwrap().len(),
        3,
        "{startup}"
    );
    let owner = startup["owner"].as_str().unwrap().to_string();
    (child, owner)
}

/// Waits until every live projection has applied the whole log.
async fn caught_up(env: &Env) {
    let log = whole_log(&*env.store).await.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = true;
        for kind in Kind::ALL {
            let cp = env.projections.checkpoint(kind, Slot::Live).await.unwrap();
            done &= cp.is_some_and(|c| c.events >= log);
        }
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "the runners did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends `tenants` benchmark tenants of ten events each, a few per transaction.
async fn seed(store: &dyn EventStore, run: u128, tenants: usize) {
    let mut appends = Vec::new();
    for i in 0..tenants {
        let id = uuid::Uuid::from_u128(run ^ i as u128);
        let stream = StreamName::from_parts("tenant", &id.to_string()).unwrap();
        let at = start() + chrono::Duration::seconds(i as i64);
        let events = ledger_projections::generate::bench_tenant(at, i);
        appends.push(ledger_core::StreamAppend::new(
            stream,
            ExpectedSeq::NoStream,
            events,
        ));
        if appends.len() == 20 {
            store
                .append_multi(std::mem::take(&mut appends))
                .await
                .unwrap();
        }
    }
    if !appends.is_empty() {
        store.append_multi(appends).await.unwrap();
    }
}

database_test!(verify_finds_a_hand_altered_row, |env: Env| async move {
    let db = env.db.clone().unwrap();
    append_all(
        &*env.store,
        history(1, 6, &random_steps(9, 6, 200), start()),
    )
    .await;
    let (code, out, err) = run(&db, &["rebuild", "all"]).await;
    assert_eq!(code, 0, "{out} {err}");
    let rebuilt: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(rebuilt["rebuilt"].as_array().unwrap().len(), 3);
    assert!(
        err.contains("rebuild tenant_phase,onboarding_locks,pending_syncs:"),
        "{err}"
    );
    assert_projected(&env).await;
    let (code, out, err) = run(&db, &["rebuild", "all", "--verify"]).await;
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out.lines().count(), 3);

    let altered = sql(
        &env,
        "UPDATE tenant_phase SET name = 'altered by hand' \
         WHERE tenant_id = (SELECT min(tenant_id) FROM tenant_phase)",
    )
    .await;
    assert_eq!(altered, 1);
    let (code, out, err) = run(&db, &["rebuild", "tenant_phase", "--verify"]).await;
    assert_eq!(code, 1, "{out} {err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["differences"], 1, "{report}");
    assert_eq!(report["listed"][0]["live"]["name"], "altered by hand");
    assert_ne!(report["listed"][0]["rebuilt"]["name"], "altered by hand");
    let error: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"], "projection_differs");

    let (code, _, err) = run(&db, &["rebuild", "tenant_phase"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&db, &["rebuild", "tenant_phase", "--verify"]).await;
    assert_eq!(code, 0, "{err}");
    assert_projected(&env).await;
    let (code, _, err) = run(&db, &["rebuild", "nope"]).await;
    assert_eq!(code, 2, "{err}");
});

database_test!(a_killed_runner_resumes_exactly, |env: Env| async move {
    let db = env.db.clone().unwrap();
    seed(&*env.store, 7 << 64, 600).await;
    let mut rng = Rng::new(3);
    for _ in 0..3 {
        let (mut child, _) = project(&db, 7).await;
        tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    let applied: u64 =
        futures::future::join_all(Kind::ALL.map(|k| env.projections.checkpoint(k, Slot::Live)))
            .await
            .into_iter()
            .map(|c| c.unwrap().map_or(0, |c| c.events))
            .sum();
    assert!(applied > 0, "the killed runners applied nothing");
    let (child, _) = project(&db, 7).await;
    caught_up(&env).await;
    drop(child);
    assert_projected(&env).await;
});

/// The owner recorded in each live checkpoint.
async fn owners(env: &Env) -> Vec<String> {
    let mut all = Vec::new();
    for kind in Kind::ALL {
        all.push(
            live(&*env.projections, kind)
                .await
                .owner
                .unwrap_or_default(),
        );
    }
    all
}

/// Two `ledger project` processes on one PostgreSQL database: one applies each projection;
/// killing it hands the projections to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runner_processes_on_postgres() {
    ledger_tests::backend::postgres_db(|db| async move {
        let (store, projections) = open(&db).await;
        let env = Env {
            store,
            projections,
            db: Some(db.clone()),
        };
        let (a, owner_a) = project(&db, 50).await;
        let (b, owner_b) = project(&db, 50).await;
        seed(&*env.store, 11 << 64, 100).await;
        caught_up(&env).await;
        let first = owners(&env).await;
        assert!(
            first.iter().all(|o| *o == owner_a || *o == owner_b),
            "{first:?}"
        );
        let leases = db
            .scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .await;
        assert_eq!(leases, 3, "one lease per projection");
        seed(&*env.store, 12 << 64, 50).await;
        caught_up(&env).await;
        assert_eq!(
            owners(&env).await,
            first,
            "one runner keeps applying each projection"
        );

        // Kill the runner of tenant_phase: the other takes over.
        let (mut killed, survivor) = if first[0] == owner_a { (a, b) } else { (b, a) };
        let surviving = if first[0] == owner_a {
            owner_b
        } else {
            owner_a
        };
        killed.start_kill().unwrap();
        killed.wait().await.unwrap();
        seed(&*env.store, 13 << 64, 50).await;
        caught_up(&env).await;
        assert!(
            owners(&env).await.iter().all(|o| *o == surviving),
            "{:?}",
            owners(&env).await
        );
        assert_projected(&env).await;
        drop(survivor);
    })
    .await;
}

/// Projection work cancelled at any point (an aborted log reader, a dropped applier) leaves no
/// pooled connection inside its transaction: with one connection in the pool, every append
/// after a cancelled read or apply must run outside it (a connection left inside a read-only
/// transaction refuses the append; one left inside an apply would swallow it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_projection_work_leaves_no_open_transaction() {
    ledger_tests::backend::postgres_db(|db| async move {
        // Another pool, to see only what is committed.
        let (committed, _) = open(&db).await;
        let options = StoreOptions {
            max_connections: 1,
            ..ledger_tests::options()
        };
        let store = Arc::new(PgStore::connect(&db.url, options).await.unwrap());
        let projections: Arc<dyn ProjectionStore> = Arc::new(store.projections());
        append_all(&*store, history(5, 20, &random_steps(5, 20, 200), start())).await;
        let target = projections
            .create(Kind::TenantPhase, Slot::Rebuild)
            .await
            .unwrap()
            .target();
        let page = projections.read_log(Position::START, 50).await.unwrap();
        let batch: Batch = page.events.into_iter().collect();
        let batch = Arc::new(batch);
        for i in 0..200u64 {
            let (p, b, t) = (projections.clone(), batch.clone(), target.clone());
            let work = tokio::spawn(async move {
                if i % 2 == 0 {
                    let _ = p.read_log(Position::START, 100).await;
                } else {
                    let _ = p.apply(&t, &b, "cancelled").await;
                }
            });
            // Cancel it somewhere in its first few hundred microseconds.
            let until = Instant::now() + Duration::from_micros(i * 7 % 400);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            work.abort();
            let _ = work.await;
            let s = StreamName::parse(format!("after-{i}")).unwrap();
            store
                .append(s.clone(), ExpectedSeq::NoStream, evs("Fact", 1))
                .await
                .unwrap_or_else(|e| panic!("the append after cancelled work {i}: {e}"));
            assert_eq!(
                seq_of(&*committed, &s).await,
                1,
                "the append after cancelled work {i} is committed"
            );
        }
    })
    .await;
}

/// The HTTP suite's projection cases on every backend, with this backend's projections.
macro_rules! http_projection_cases {
    ($($case:ident),* $(,)?) => {
        $(
            projection_test!($case, |env: Env| crate::api_suite::projections::$case(
                env.events(),
                env.projections.clone(),
            ));
        )*
    };
}

http_projection_cases!(
    queries_read_own_writes,
    tenant_tokens_see_their_tenant,
    status_and_online_rebuild,
    projection_behind,
    own_writes_are_never_refused,
    projection_metrics,
    progress_stream,
);
