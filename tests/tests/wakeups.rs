//! Wake-ups across processes, outside the append: a runner process (`ledger project`, its poll
//! fallback set to an hour) applies events appended by other processes (this one, and a
//! short-lived `ledger append`) as soon as they commit, or once the older transactions that
//! hid them from readers end; on PostgreSQL no trigger notifies
//! inside an append any more, and a database migrated before that loses its trigger.

use std::path::Path;
use std::time::Duration;

use ledger_core::{EventStore, ExpectedSeq, Position, StoreError};
use ledger_tests::backend::{Db, Kind as Backend};
use ledger_tests::env::{Env, open};
use ledger_tests::fixtures::{evs, stream};
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgListener;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::time::{Instant, timeout};

use crate::serve::{PATIENCE, ledger_command};

/// How long an event may take to reach the runner process. Generous for a loaded machine,
/// and far below the runner's poll interval (`--poll-interval 1h`): only a wake-up brings it.
const WOKEN_WITHIN: Duration = Duration::from_secs(30);

/// Starts `ledger project` polling only once an hour, and waits for its startup line.
async fn runner_process(db: &Db) -> Child {
    let mut child = ledger_command(db, None)
        .args(["project", "--poll-interval", "1h"])
        .spawn()
        .expect("ledger project starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = timeout(PATIENCE, lines.next_line())
        .await
        .expect("ledger project says it runs")
        .unwrap()
        .expect("a startup line");
    let startup: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        startup["projecting"].as_array().unwrap().len(),
        ledger_read_models::catalog().names().len(),
        "{startup}"
    );
    child
}

/// Waits until every live read model has seen the event at `position` (applied by the runner
/// process); returns how long that took, or panics after `within`.
async fn applied(env: &Env, position: Position, within: Duration) -> Duration {
    let started = Instant::now();
    let projector = env.projector(1);
    for name in ledger_read_models::catalog().names() {
        let left = within.saturating_sub(started.elapsed());
        if let Err(e) = projector.wait_for(name, position, left).await {
            panic!(
                "the runner process did not apply the event at {position:?} within {within:?}: {e}"
            );
        }
    }
    started.elapsed()
}

store_test!(databases: a_runner_process_is_woken_by_appends_of_other_processes, |db| async move {
    db.migrate().await.unwrap();
    let env = open(&db).await;
    let store = env.events();
    let first = store
        .append(stream("note-first"), ExpectedSeq::NoStream, evs("Noted", 1))
        .await
        .unwrap();
    let mut runner = runner_process(&db).await;
    // Catching up on start needs no wake-up.
    applied(&env, first.position, Duration::from_secs(120)).await;

    for round in 0..3 {
        // An append of this process.
        let s = stream(&format!("note-here{round}"));
        let here = store.append(s, ExpectedSeq::NoStream, evs("Noted", 1)).await.unwrap();
        let took = applied(&env, here.position, WOKEN_WITHIN).await;
        eprintln!("{db}: an append of the test process was applied in {took:?}");

        // An append of a `ledger append` process, which exits right after it.
        let name = format!("note-cli{round}");
        let out = ledger_command(&db, None)
            .args(["append", &name, "--expected", "no-stream", "--type", "Noted", "--data", "{}"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let position = Position(printed["position"].as_u64().unwrap());
        let took = applied(&env, position, WOKEN_WITHIN).await;
        eprintln!("{db}: an append of `ledger append` was applied in {took:?}");
    }
    if db.kind == Backend::Postgres {
        // An append that commits while an older transaction is still open (on any database of
        // the server) stays hidden from readers until that one ends, after the wake-up: the
        // runner keeps reading until then instead of waiting for its poll.
        let mut older = PgConnection::connect(&db.url).await.unwrap();
        let mut open = older.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()").execute(&mut *open).await.unwrap();
        let s = stream("note-behind");
        let behind = store.append(s, ExpectedSeq::NoStream, evs("Noted", 1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        open.commit().await.unwrap();
        older.close().await.unwrap();
        let took = applied(&env, behind.position, WOKEN_WITHIN).await;
        eprintln!("{db}: an append behind an older transaction was applied {took:?} after it ended");
    }
    assert!(runner.try_wait().unwrap().is_none(), "the runner process exited");
    drop(runner);
});

/// Applies only `db`'s migrations up to `version`, as an older ledger did.
async fn migrate_up_to(db: &Db, version: i64) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(match db.kind {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        });
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number <= version {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let migrator = Migrator::new(dir.path()).await.unwrap();
    match db.kind {
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url).await.unwrap();
            migrator.run(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Backend::Sqlite => {
            let options = db
                .url
                .parse::<SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true);
            let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
            migrator.run(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// Triggers on `events` whose function notifies.
const NOTIFYING_TRIGGERS: &str = "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
     WHERE t.tgrelid = 'events'::regclass AND NOT t.tgisinternal AND p.prosrc ILIKE '%notify%'";

store_test!(databases: a_database_with_the_notify_trigger_migrates_without_it, |db| async move {
    migrate_up_to(&db, 2).await;
    if db.kind == Backend::Postgres {
        assert_eq!(db.scalar(NOTIFYING_TRIGGERS).await, 1, "version 2 notifies in appends");
    }
    match db.open(ledger_tests::options()).await {
        Err(StoreError::SchemaMismatch { found: 2, .. }) => {}
        Err(e) => panic!("expected a schema mismatch at version 2, got {e:?}"),
        Ok(_) => panic!("a database at version 2 opened without migrating"),
    }
    let (from, to) = db.migrate().await.unwrap();
    assert_eq!(from, 2);
    assert!(to >= 3, "migrated to {to}");
    if db.kind == Backend::Postgres {
        assert_eq!(db.scalar(NOTIFYING_TRIGGERS).await, 0);
        let functions = "SELECT count(*) FROM pg_proc WHERE proname = 'events_notify'";
        assert_eq!(db.scalar(functions).await, 0);
    }
    let store = open(&db).await.events();
    let mut listener = match db.kind {
        Backend::Postgres => {
            let mut l = PgListener::connect(&db.url).await.unwrap();
            l.listen("ledger_events").await.unwrap();
            Some(l)
        }
        Backend::Sqlite => None,
    };
    let r = store.append(stream("note-1"), ExpectedSeq::NoStream, evs("Noted", 2)).await.unwrap();
    assert_eq!(r.last_seq.0, 2);
    // Other processes still hear of it, from after the commit.
    if let Some(listener) = listener.as_mut() {
        let heard = timeout(WOKEN_WITHIN, listener.recv()).await;
        assert!(matches!(heard, Ok(Ok(_))), "no notification after an append: {heard:?}");
    }
});
