//! Projections on every backend: incremental batches equal a rebuild equal the domain's fold; a
//! transaction that commits late reaches every projection; rebuilds while writers append; a
//! version bump rebuilds; `--verify` finds a hand-altered row; a killed runner resumes without
//! applying an event twice or skipping one; two runner processes on one PostgreSQL database;
//! queries with `Condition::In` answer alike on every backend.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ledger_core::{
    EventStore, ExpectedSeq, LogFilter, LogReader, Position, StoreOptions, StreamName,
};
use ledger_postgres::PgStore;
use ledger_projector::{
    Batch, Checkpoint, Column, Condition, Index, MAX_IN_VALUES, Plan, ProjectionStore, Projector,
    Query, ReadModel, Row, Schema, Signal, SignalingStore, Slot, TableSpec, TableWrite,
    Value as PValue, fold,
};
use ledger_read_models::testing::{Append, Rng, history, random_steps, reference};
use ledger_read_models::{Change, Logged, tenant_phase};
use ledger_tests::backend::{Db, Kind as Backend};
use ledger_tests::env::{Env, open};
use ledger_tests::fixtures::{evs, seq_of, whole_log};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Every read model, in the catalog's order.
fn names() -> Vec<&'static str> {
    ledger_read_models::catalog().names()
}

/// The tables of the read model `name`.
fn tables(name: &str) -> &'static [ledger_projector::TableSpec] {
    ReadModel::schema(&**ledger_read_models::catalog().get(name).unwrap()).tables
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

/// The onboarding events of the whole log, decoded as the read models see them.
async fn changes(store: &dyn EventStore) -> Vec<Change> {
    whole_log(store)
        .await
        .into_iter()
        .filter_map(Change::from_envelope)
        .collect()
}

/// How many events of the log the read models `names` read (those of tenant streams, or every
/// one with the audit trail).
async fn events_read(store: &dyn EventStore, names: &[&str]) -> u64 {
    let filter = ledger_read_models::catalog().filter(names);
    whole_log(store)
        .await
        .iter()
        .filter(|e| filter.matches(e.stream.as_str()))
        .count() as u64
}

/// The rows of every table of `name` the whole log must give, by the domain's fold (and for
/// the audit trail, one row per event).
async fn expected(store: &dyn EventStore, name: &str) -> BTreeMap<&'static str, Vec<Row>> {
    let mut all = reference(&changes(store).await);
    all.insert(
        ledger_read_models::audit_trail::TABLE.name,
        ledger_read_models::testing::trail_reference(&whole_log(store).await),
    );
    tables(name)
        .iter()
        .map(|t| (t.name, all.remove(t.name).unwrap_or_default()))
        .collect()
}

/// Every row of every live table of the read model `name`.
async fn live_rows(
    projections: &dyn ProjectionStore,
    name: &str,
) -> BTreeMap<&'static str, Vec<Row>> {
    let mut all = BTreeMap::new();
    for table in tables(name) {
        let rows = projections
            .query(&Query::new(table, usize::MAX >> 1))
            .await
            .unwrap();
        all.insert(table.name, rows);
    }
    all
}

/// Asserts every live read model equals the fold of the whole log, having read each of its
/// events exactly once.
async fn assert_projected(env: &Env) {
    for name in names() {
        let log = events_read(&*env.store, &[name]).await;
        let cp = live(&*env.projections, name).await;
        assert_eq!(
            cp.events, log,
            "{name}: applied {} of {log} events",
            cp.events
        );
        assert_eq!(
            live_rows(&*env.projections, name).await,
            expected(&*env.store, name).await,
            "{name} differs from the fold of the log"
        );
    }
}

async fn live(projections: &dyn ProjectionStore, name: &str) -> Checkpoint {
    projections
        .checkpoint(name, Slot::Live)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name} has no live copy"))
}

/// Runs the live runners of `projector` in the background until the sender is used or dropped.
fn run_in_background(
    projector: &Projector<Logged>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let projector = projector.clone();
    let task = tokio::spawn(async move {
        projector
            .run(&names(), async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
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
            for name in names() {
                let batch = 1 + rng.below(40) as usize;
                env.projector(batch).catch_up(name).await.unwrap();
            }
        }
        assert_projected(&env).await;
        let incremental =
            futures::future::join_all(names().into_iter().map(|n| live_rows(&*env.projections, n)))
                .await;
        let report = env
            .projector(17)
            .rebuild(&names(), &mut |_| {})
            .await
            .unwrap();
        // Read models that read the same events share a pass; the report adds the passes up.
        let mut filters = Vec::new();
        let mut passes = 0;
        for name in names() {
            let filter = ledger_read_models::catalog().filter(&[name]);
            if !filters.contains(&filter) {
                passes += events_read(&*env.store, &[name]).await;
                filters.push(filter);
            }
        }
        assert_eq!(report.events, passes);
        assert_projected(&env).await;
        for (name, before) in names().into_iter().zip(incremental) {
            assert_eq!(live_rows(&*env.projections, name).await, before, "{name}");
            let verified = env.projector(64).verify(name, &mut |_| {}).await.unwrap();
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
        for name in names() {
            for p in &positions {
                projector
                    .wait_for(name, *p, Duration::from_secs(60))
                    .await
                    .unwrap();
            }
        }
        // Let the runners settle on the end of the log, then compare.
        let end = append_all(&*store, history(4, 1, &random_steps(4, 1, 3), start())).await;
        for name in names() {
            projector
                .wait_for(name, end, Duration::from_secs(60))
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
    let report = projector.rebuild(&names(), &mut |_| {}).await.unwrap();
    assert!(report.events > 0);
    writing.store(false, Ordering::SeqCst);
    let mut ends = Vec::new();
    for w in writers {
        ends.push(w.await.unwrap());
    }
    for name in names() {
        for end in &ends {
            projector
                .wait_for(name, *end, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    stop.send(()).unwrap();
    runner.await.unwrap();
    assert_projected(&env).await;

    // A second rebuild reuses the names of the indexes the first left on the live tables.
    projector.rebuild(&names(), &mut |_| {}).await.unwrap();
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
        let mut live = Vec::new();
        for name in names() {
            for table in tables(name) {
                for index in table.indexes {
                    live.push(format!("'{}'", index.name_on(table.name)));
                }
            }
        }
        let expected = live.len() as i64;
        let live = format!("IN ({})", live.join(", "));
        assert_eq!(
            db.scalar(&count(&live)).await,
            expected,
            "the live tables' indexes"
        );
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

projection_test!(databases: a_version_bump_rebuilds_on_start, |env: Env| async move {
    append_all(
        &*env.store,
        history(1, 5, &random_steps(5, 5, 200), start()),
    )
    .await;
    for name in names() {
        env.projector(50).catch_up(name).await.unwrap();
    }
    // Tables of an older version, with a row nobody would derive from the log.
    sql(
        &env,
        "UPDATE projection_checkpoints SET version = 0 WHERE name = 'tenant_phase'",
    )
    .await;
    assert_eq!(sql(&env, "UPDATE tenant_phase SET name = 'stale'").await, 5);
    let cp = env.projector(50).catch_up("tenant_phase").await.unwrap();
    assert_eq!(cp.version, tenant_phase::SCHEMA.version);
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
        names().len(),
        "{startup}"
    );
    let owner = startup["owner"].as_str().unwrap().to_string();
    (child, owner)
}

/// Waits until every live projection has applied the whole log.
async fn caught_up(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = true;
        for name in names() {
            let log = events_read(&*env.store, &[name]).await;
            let cp = env.projections.checkpoint(name, Slot::Live).await.unwrap();
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
        let events = ledger_read_models::bench::bench_tenant(at, i);
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

projection_test!(databases: verify_finds_a_hand_altered_row, |env: Env| async move {
    let db = env.db.clone().unwrap();
    append_all(
        &*env.store,
        history(1, 6, &random_steps(9, 6, 200), start()),
    )
    .await;
    let (code, out, err) = run(&db, &["rebuild", "all"]).await;
    assert_eq!(code, 0, "{out} {err}");
    let rebuilt: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(rebuilt["rebuilt"].as_array().unwrap().len(), names().len());
    // One pass per set of read models that read the same events, each reported.
    let catalog = ledger_read_models::catalog();
    let mut passes: Vec<(ledger_core::LogFilter, Vec<&str>)> = Vec::new();
    for name in names() {
        let filter = catalog.filter(&[name]);
        match passes.iter_mut().find(|(f, _)| *f == filter) {
            Some((_, group)) => group.push(name),
            None => passes.push((filter, vec![name])),
        }
    }
    for (_, group) in &passes {
        let line = format!("rebuild {}: ", group.join(","));
        assert!(err.lines().any(|l| l.starts_with(&line) && l.contains("(100%)")), "{err}");
    }
    assert_projected(&env).await;
    let (code, out, err) = run(&db, &["rebuild", "all", "--verify"]).await;
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out.lines().count(), names().len());

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

projection_test!(databases: a_killed_runner_resumes_exactly, |env: Env| async move {
    let db = env.db.clone().unwrap();
    seed(&*env.store, 7 << 64, 600).await;
    let mut rng = Rng::new(3);
    for _ in 0..3 {
        let (mut child, _) = project(&db, 7).await;
        tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    let applied: u64 = futures::future::join_all(
        names()
            .into_iter()
            .map(|n| env.projections.checkpoint(n, Slot::Live)),
    )
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
    for name in names() {
        all.push(
            live(&*env.projections, name)
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
        let env = open(&db).await;
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
        assert_eq!(leases, names().len() as i64, "one lease per read model");
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

/// Applies `batch` to the `tenant_phase` copy `target` as an applier does, in one
/// transaction.
async fn apply_batch(
    projections: &dyn ProjectionStore,
    target: &ledger_projector::Target,
    batch: &Batch<Change>,
) -> Result<(), ledger_core::StoreError> {
    let model = ledger_read_models::TenantPhase;
    let schema = model.schema();
    let last = batch.last().expect("a batch with events");
    let Some(mut tx) = projections
        .begin(schema, target, last, batch.len(), "cancelled")
        .await?
    else {
        return Ok(());
    };
    let plan = Plan::of(&model, batch, None);
    let keys = plan.to_load(0);
    let loaded = vec![tx.load(&schema.tables[0], &keys).await?];
    let writes = fold(&model, plan, loaded, batch).expect("the batch folds");
    tx.write(writes).await?;
    tx.commit().await
}

/// Projection work cancelled at any point (an aborted log reader, a dropped applier) leaves no
/// pooled connection inside its transaction: with one connection in the pool, every append
/// after a cancelled read or apply must run outside it (a connection left inside a read-only
/// transaction refuses the append; one left inside an apply would swallow it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_projection_work_leaves_no_open_transaction() {
    ledger_tests::backend::postgres_db(|db| async move {
        // Another pool, to see only what is committed.
        let committed = open(&db).await.store;
        let options = StoreOptions {
            max_connections: 1,
            ..ledger_tests::options()
        };
        let store = Arc::new(PgStore::connect(&db.url, options).await.unwrap());
        let projections: Arc<dyn ProjectionStore> = Arc::new(store.projections());
        append_all(&*store, history(5, 20, &random_steps(5, 20, 200), start())).await;
        let schema = &tenant_phase::SCHEMA;
        let target = projections
            .create(schema, Slot::Rebuild)
            .await
            .unwrap()
            .target();
        let filter = LogFilter::categories(["tenant"]);
        let page = store.read_page(Position::START, &filter, 50).await.unwrap();
        let batch: Batch<Change> = page
            .events
            .into_iter()
            .map(|raw| (raw.position, Change::from_raw(raw)))
            .collect();
        let batch = Arc::new(batch);
        for i in 0..200u64 {
            let (p, b, t) = (projections.clone(), batch.clone(), target.clone());
            let (log, filter) = (store.clone(), filter.clone());
            let work = tokio::spawn(async move {
                if i % 2 == 0 {
                    let _ = log.read_page(Position::START, &filter, 100).await;
                } else {
                    let _ = apply_batch(&*p, &t, &b).await;
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

/// A read model's batch in flight does not hold back readers of the log on PostgreSQL: it
/// appends no event, so an event committed while it runs is read at once. A transaction that
/// may append still holds them back (`late_commit_reaches_every_projection`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_batch_does_not_hold_back_readers() {
    ledger_tests::backend::postgres_db(|db| async move {
        let env = open(&db).await;
        let stream = |s: &str| StreamName::parse(s).unwrap();
        let first = env
            .store
            .append(stream("tenant-a"), ExpectedSeq::NoStream, evs("E", 1))
            .await
            .unwrap();
        let schema = &tenant_phase::SCHEMA;
        let target = env
            .projections
            .create(schema, Slot::Live)
            .await
            .unwrap()
            .target();
        let batch = env
            .projections
            .begin(schema, &target, first.position, 1, "open-batch")
            .await
            .unwrap()
            .expect("the checkpoint is where it was created");
        let second = env
            .store
            .append(stream("tenant-b"), ExpectedSeq::NoStream, evs("E", 1))
            .await
            .unwrap();
        let page = env
            .log
            .read_page(Position::START, &LogFilter::all(), 100)
            .await
            .unwrap();
        let read: Vec<Position> = page.events.iter().map(|e| e.position).collect();
        assert_eq!(
            read,
            [first.position, second.position],
            "the open batch held the reader back"
        );
        drop(batch);
    })
    .await;
}

/// A table for `Condition::In`: a two-column key, a nullable text with an index, a nullable
/// time.
static LISTED: TableSpec = TableSpec {
    name: "listed",
    columns: &[
        Column::text("team"),
        Column::int("n"),
        Column::text("tag").nullable(),
        Column::time("at").nullable(),
    ],
    key: 2,
    indexes: &[Index {
        name: "tag",
        columns: &["tag"],
        only_null: None,
    }],
};

static LISTED_SCHEMA: Schema = Schema {
    name: "listed",
    version: 1,
    tables: &[LISTED],
};

/// How many rows of each team `LISTED` holds.
const PER_TEAM: i64 = 2_000;

/// The time of row `n`.
fn listed_at(n: i64) -> DateTime<Utc> {
    start() + chrono::TimeDelta::seconds(n)
}

/// The rows of `LISTED`, in key order: teams `a`, `b`, `c` of `PER_TEAM` rows each; `tag` is
/// `t{n % 7}` but null for every fifth row, `at` is null for every third.
fn listed_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for team in ["a", "b", "c"] {
        for n in 0..PER_TEAM {
            let tag = if n % 5 == 0 {
                PValue::Null
            } else {
                PValue::text(format!("t{}", n % 7))
            };
            let at = if n % 3 == 0 {
                PValue::Null
            } else {
                PValue::time(listed_at(n))
            };
            rows.push(vec![PValue::text(team), PValue::Int(n), tag, at]);
        }
    }
    rows.sort();
    rows
}

/// Creates and fills `LISTED` on the env's projection store.
async fn fill_listed(projections: &dyn ProjectionStore) -> Vec<Row> {
    let target = projections
        .create(&LISTED_SCHEMA, Slot::Live)
        .await
        .unwrap()
        .target();
    let mut tx = projections
        .begin(&LISTED_SCHEMA, &target, Position(1), 1, "listed")
        .await
        .unwrap()
        .expect("the checkpoint is where it was created");
    let rows = listed_rows();
    tx.write(vec![TableWrite {
        table: &LISTED,
        inserts: rows.clone(),
        upserts: vec![],
        deletes: vec![],
    }])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        projections
            .query(&Query::new(&LISTED, usize::MAX >> 1))
            .await
            .unwrap(),
        rows
    );
    rows
}

/// Every row of `query` (whose limit is the page size), paging by `after` from the last key
/// of each full page; checks no page is longer than the limit.
async fn all_pages(projections: &dyn ProjectionStore, query: &Query) -> Vec<Row> {
    let mut all: Vec<Row> = Vec::new();
    let mut query = query.clone();
    loop {
        let page = projections.query(&query).await.unwrap();
        assert!(page.len() <= query.limit, "{} rows in a page", page.len());
        all.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == query.limit => {
                query = query.after(Some(LISTED.key_of(last)));
            }
            _ => return all,
        }
    }
}

/// The rows of `rows` that `keep` accepts, in `LISTED`'s key order (descending when asked).
fn listed_where(
    rows: &[Row],
    descending: bool,
    keep: impl Fn(&str, i64, &PValue, &PValue) -> bool,
) -> Vec<Row> {
    let mut kept: Vec<Row> = rows
        .iter()
        .filter(|r| {
            let (PValue::Text(team), PValue::Int(n)) = (&r[0], &r[1]) else {
                panic!("a key of LISTED: {r:?}")
            };
            keep(team, *n, &r[2], &r[3])
        })
        .cloned()
        .collect();
    if descending {
        kept.reverse();
    }
    kept
}

fn tag(t: &str) -> PValue {
    PValue::text(t)
}

// `Condition::In` on every backend: several values, one (exactly `Eq`), none, listed nulls
// (which match nothing), times, combined with ranges and paged by `after` both ways, about
// five thousand values, and the refused queries (too many values, a mistyped one).
projection_test!(in_conditions_match_listed_values, |env: Env| async move {
    let p = &*env.projections;
    let rows = fill_listed(p).await;
    let all = usize::MAX >> 1;
    let query = |conditions: Vec<Condition>| {
        let mut q = Query::new(&LISTED, all);
        q.conditions = conditions;
        q
    };
    let is_tag = |v: &PValue, tags: &[&str]| match v {
        PValue::Text(t) => tags.contains(&t.as_str()),
        _ => false,
    };

    // Several values, one of them in no row.
    let got = p
        .query(&query(vec![Condition::In(
            "tag",
            vec![tag("t1"), tag("t3"), tag("nope")],
        )]))
        .await
        .unwrap();
    let want = listed_where(&rows, false, |_, _, t, _| is_tag(t, &["t1", "t3"]));
    assert!(want.len() > 1_000);
    assert_eq!(got, want);
    let got = p
        .query(&query(vec![Condition::In(
            "team",
            vec![PValue::text("c"), PValue::text("a")],
        )]))
        .await
        .unwrap();
    assert_eq!(got, listed_where(&rows, false, |team, _, _, _| team != "b"));

    // One value is `Eq`, on every column type, a null included.
    for (column, value) in [
        ("tag", tag("t2")),
        ("team", PValue::text("b")),
        ("n", PValue::Int(17)),
        ("at", PValue::time(listed_at(17))),
        ("tag", PValue::Null),
    ] {
        let one = p
            .query(&query(vec![Condition::In(column, vec![value.clone()])]))
            .await
            .unwrap();
        let eq = p
            .query(&query(vec![Condition::Eq(column, value.clone())]))
            .await
            .unwrap();
        assert_eq!(one, eq, "{column} in [{value:?}]");
        assert_eq!(
            one.is_empty(),
            value == PValue::Null,
            "{column} in [{value:?}]"
        );
    }

    // None matches no row, alone or with other conditions.
    assert!(
        p.query(&query(vec![Condition::In("tag", vec![])]))
            .await
            .unwrap()
            .is_empty()
    );
    let none = query(vec![
        Condition::Ge("n", PValue::Int(0)),
        Condition::In("n", vec![]),
    ])
    .descending(true);
    assert!(p.query(&none).await.unwrap().is_empty());

    // A listed null matches no row, not even those whose column is null.
    let got = p
        .query(&query(vec![Condition::In(
            "tag",
            vec![PValue::Null, tag("t4")],
        )]))
        .await
        .unwrap();
    assert_eq!(
        got,
        listed_where(&rows, false, |_, _, t, _| is_tag(t, &["t4"]))
    );
    for nulls in [vec![PValue::Null], vec![PValue::Null, PValue::Null]] {
        for column in ["tag", "at", "n"] {
            let q = query(vec![Condition::In(column, nulls.clone())]);
            assert!(p.query(&q).await.unwrap().is_empty(), "{q:?}");
        }
    }

    // Times, a null and one no row holds among them.
    let times = vec![
        PValue::time(listed_at(4)),
        PValue::Null,
        PValue::time(listed_at(5)),
        PValue::time(listed_at(6)),
        PValue::time(listed_at(PER_TEAM + 1)),
    ];
    let got = p
        .query(&query(vec![Condition::In("at", times)]))
        .await
        .unwrap();
    assert_eq!(
        got,
        listed_where(&rows, false, |_, n, _, at| *at != PValue::Null
            && [4, 5].contains(&n))
    );
    assert_eq!(got.len(), 6);

    // With a range and another list (one listing a null), paged by `after` in both orders.
    for descending in [false, true] {
        for page in [1, 37, 500] {
            let q = Query::new(&LISTED, page)
                .when(Condition::In(
                    "team",
                    vec![PValue::text("a"), PValue::text("c")],
                ))
                .when(Condition::Ge("n", PValue::Int(100)))
                .when(Condition::Lt(
                    "n",
                    PValue::Int(if page == 1 { 160 } else { 900 }),
                ))
                .when(Condition::In(
                    "tag",
                    vec![tag("t0"), PValue::Null, tag("t2"), tag("t5")],
                ))
                .when(Condition::In("at", vec![]))
                .descending(descending);
            // (An empty list ANDed in: nothing; then the same without it.)
            assert!(p.query(&q).await.unwrap().is_empty());
            let mut q = q;
            q.conditions.pop();
            let got = all_pages(p, &q).await;
            let upper = if page == 1 { 160 } else { 900 };
            let want = listed_where(&rows, descending, |team, n, t, _| {
                team != "b" && (100..upper).contains(&n) && is_tag(t, &["t0", "t2", "t5"])
            });
            assert!(want.len() > 10, "{}", want.len());
            assert_eq!(got, want, "descending {descending}, pages of {page}");
            // Resuming after any row's key gives the rest.
            let middle = LISTED.key_of(&want[want.len() / 2]);
            let rest = all_pages(p, &q.clone().after(Some(middle))).await;
            assert_eq!(rest, want[want.len() / 2 + 1..], "descending {descending}");
        }
    }

    // About five thousand values (duplicates, nulls and values no row holds among them),
    // with `Eq` on the key's first column, paged both ways.
    let many: Vec<PValue> = (0..5_000i64)
        .map(|i| match i % 10 {
            0 => PValue::Null,
            1 => PValue::Int(-i),
            _ => PValue::Int((i * 7) % (PER_TEAM + 500)),
        })
        .collect();
    let listed: std::collections::BTreeSet<i64> = many
        .iter()
        .filter_map(|v| match v {
            PValue::Int(n) => Some(*n),
            _ => None,
        })
        .collect();
    for descending in [false, true] {
        let q = Query::new(&LISTED, 250)
            .when(Condition::Eq("team", PValue::text("b")))
            .when(Condition::In("n", many.clone()))
            .descending(descending);
        let got = all_pages(p, &q).await;
        let want = listed_where(&rows, descending, |team, n, _, _| {
            team == "b" && listed.contains(&n)
        });
        assert!(want.len() > 1_000, "{}", want.len());
        assert_eq!(got, want, "descending {descending}");
    }
    let texts: Vec<PValue> = (0..5_000)
        .map(|i| tag(&format!("t{}", i % 3 + 100 * (i % 2))))
        .collect();
    let got = p
        .query(&query(vec![Condition::In("tag", texts)]))
        .await
        .unwrap();
    assert_eq!(
        got,
        listed_where(&rows, false, |_, _, t, _| is_tag(t, &["t0", "t1", "t2"]))
    );

    // The most values a query may list pass; one more, or a mistyped one, is refused as the
    // other malformed queries are.
    let most: Vec<PValue> = (0..MAX_IN_VALUES as i64)
        .map(|i| PValue::Int(i - 5))
        .collect();
    let q = query(vec![Condition::In("n", most.clone())])
        .after(Some(vec![PValue::text("b"), PValue::Int(PER_TEAM - 3)]));
    assert_eq!(
        p.query(&q).await.unwrap(),
        rows[2 * PER_TEAM as usize - 2..]
    );
    let refused = [
        query(vec![Condition::In(
            "n",
            [most.clone(), vec![PValue::Int(-1)]].concat(),
        )]),
        query(vec![
            Condition::In("n", most[..MAX_IN_VALUES / 2].to_vec()),
            Condition::In("n", most[MAX_IN_VALUES / 2 - 1..].to_vec()),
        ]),
        query(vec![Condition::In(
            "n",
            vec![PValue::Int(1), PValue::text("2")],
        )]),
        query(vec![Condition::In("tag", vec![tag("t1"), PValue::Int(2)])]),
        query(vec![Condition::In("nope", vec![PValue::Int(1)])]),
    ];
    for q in refused {
        let err = p.query(&q).await.unwrap_err();
        assert_eq!(err.code(), "internal", "{err}");
    }
});
