//! Backend-specific checks of the SQLite store: schema handling, database-level guarantees,
//! chunked batches, and a differential run against the in-memory reference store.

use futures::TryStreamExt;
use ledger_core::{
    AppendResult, Baseline, BenchRow, Envelope, EventStore, ExpectedSeq, NewEvent, Position,
    ReadAll, Seq, StoreError, StoreOptions, StreamAppend, StreamName, TransactionalStore,
};
use ledger_memory::MemoryStore;
use ledger_sqlite::SqliteStore;
use serde_json::json;
use sqlx::Connection;

fn s(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

fn ev(t: &str, n: u64) -> NewEvent {
    NewEvent::new(t, json!({"n": n, "text": "x_y%z", "f": 1.5}))
        .with_metadata(json!({"actor": "test"}))
}

async fn open(dir: &tempfile::TempDir, options: StoreOptions) -> SqliteStore {
    let path = dir.path().join("ledger.db");
    SqliteStore::open(path.to_str().unwrap(), options)
        .await
        .unwrap()
}

async fn all(store: &impl EventStore, q: ReadAll) -> Result<Vec<Envelope>, StoreError> {
    store.read_all(q).try_collect().await
}

#[tokio::test]
async fn opens_migrates_and_checks_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let url = format!("sqlite://{}", path.display());
    assert_eq!(SqliteStore::required_schema_version(), 5);
    assert_eq!(SqliteStore::migrate(&url).await.unwrap(), (0, 5));
    assert_eq!(SqliteStore::migrate(&url).await.unwrap(), (5, 5));
    let store = SqliteStore::open(&url, StoreOptions::default())
        .await
        .unwrap();
    store
        .append(s("t-1"), ExpectedSeq::NoStream, vec![ev("A", 1)])
        .await
        .unwrap();
    drop(store);

    // A database migrated by a newer ledger is "ahead".
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (6, 'future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = SqliteStore::open(&url, StoreOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            StoreError::SchemaMismatch {
                found: 6,
                needed: 5
            }
        ),
        "{err:?}"
    );
    let err = SqliteStore::migrate(&url).await.unwrap_err();
    assert_eq!(err.code(), "schema_mismatch");

    // A database with other tables but no ledger tables is migrated on open.
    let other = dir.path().join("other.db");
    let other_url = format!("sqlite:{}?mode=rwc", other.display());
    let mut conn = sqlx::SqliteConnection::connect(&other_url).await.unwrap();
    sqlx::query("CREATE TABLE unrelated (x INTEGER)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let store = SqliteStore::open(other.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.stream_seq(s("t-1")).await.unwrap(), Seq(0));
}

#[tokio::test]
async fn events_are_append_only_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, StoreOptions::default()).await;
    store
        .append(s("t-1"), ExpectedSeq::Any, vec![ev("A", 1)])
        .await
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in ["UPDATE events SET data = '{}'", "DELETE FROM events"] {
        let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}

#[tokio::test]
async fn long_batches_are_chunked_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, StoreOptions::default()).await;
    let batch: Vec<NewEvent> = (0..1234).map(|i| ev("Bulk", i)).collect();
    let r = store
        .append(s("bulk-1"), ExpectedSeq::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(
        (r.first_seq, r.last_seq, r.position),
        (Seq(1), Seq(1234), Position(1234))
    );
    let again = store
        .append(s("bulk-1"), ExpectedSeq::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(
        again,
        AppendResult {
            replayed: true,
            ..r
        }
    );

    // A long batch whose last chunk reuses an id writes nothing at all.
    let mut bad: Vec<NewEvent> = (0..1100).map(|i| ev("Bulk", i)).collect();
    bad[1050] = batch[3].clone();
    let err = store
        .append(s("bulk-1"), ExpectedSeq::Exact(Seq(1234)), bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "event_id_reused");
    assert_eq!(store.stream_seq(s("bulk-1")).await.unwrap(), Seq(1234));
    assert_eq!(store.log_len().await.unwrap(), 1234);

    let read: Vec<Envelope> = store
        .read_stream(s("bulk-1"), Seq(1000))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read.len(), 235);
    assert_eq!(read[0].event_id, batch[999].event_id);
    assert_eq!(read[0].data, batch[999].data);
}

#[tokio::test]
async fn concurrent_writers_get_gapless_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, StoreOptions::default()).await;
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 10 {
                let seq = store.stream_seq(s("hot-1")).await.unwrap();
                match store
                    .append(s("hot-1"), ExpectedSeq::Exact(seq), vec![ev("W", w)])
                    .await
                {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict(c)) => assert!(c.current_seq > seq),
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read: Vec<Envelope> = store
        .read_stream(s("hot-1"), Seq(1))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read.len(), 160);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.seq, Seq(i as u64 + 1));
        assert_eq!(e.position, Position(i as u64 + 1));
    }
}

#[tokio::test]
async fn baseline_runs_plain_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, StoreOptions::default()).await;
    store.baseline_reset().await.unwrap();
    let rows: Vec<BenchRow> = (1..=600)
        .map(|i| BenchRow {
            stream: s("bench-1"),
            seq: Seq(i),
            event: ev("B", i),
        })
        .collect();
    store.baseline_insert(rows).await.unwrap();
    store.baseline_reset().await.unwrap();
    store
        .append(s("t-1"), ExpectedSeq::Any, vec![ev("A", 1), ev("A", 2)])
        .await
        .unwrap();
    assert_eq!(store.baseline_scan().await.unwrap(), 2);
    assert_eq!(store.log_len().await.unwrap(), 2);
}

/// What an outcome looks like with the recording time left out (the two stores' clocks differ).
fn norm_env(e: &Envelope) -> String {
    format!(
        "{} {} {} {} {} {} {}",
        e.event_id, e.stream, e.seq, e.position, e.event_type, e.data, e.metadata
    )
}

fn norm<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(StoreError::Conflict(c)) => format!(
            "conflict {} {} {} {} [{}]",
            c.stream,
            c.expected,
            c.current_seq,
            c.missed_truncated,
            c.missed.iter().map(norm_env).collect::<Vec<_>>().join("; ")
        ),
        Err(e) => format!("{} {e}", e.code()),
    }
}

/// Runs one script of operations against both stores and compares every outcome.
#[tokio::test]
async fn behaves_like_the_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        read_page_size: 3,
        limits: ledger_core::Limits {
            max_missed_events: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let sql = open(&dir, options.clone()).await;
    let mem = MemoryStore::with_options(options);

    let a = [ev("A", 1), ev("A", 2), ev("A", 3)];
    let b = [ev("B", 1), ev("B", 2)];
    let c = ev("C", 1);
    let d = ev("D", 1);
    let t1 = s("tenant-1");
    let slug = s("slug-acme");
    let other = s("tenant_x-1");
    type Op = Box<dyn Fn() -> (StreamName, ExpectedSeq, Vec<NewEvent>)>;
    let ops: Vec<Op> = vec![
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || (t.clone(), ExpectedSeq::Exists, vec![a[0].clone()])
        }),
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || {
                (
                    t.clone(),
                    ExpectedSeq::NoStream,
                    vec![a[0].clone(), a[1].clone()],
                )
            }
        }),
        // Replay with a stale expectation.
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || {
                (
                    t.clone(),
                    ExpectedSeq::NoStream,
                    vec![a[0].clone(), a[1].clone()],
                )
            }
        }),
        // Replay of a part, reordered, other content, other stream.
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || (t.clone(), ExpectedSeq::Any, vec![a[1].clone()])
        }),
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || {
                (
                    t.clone(),
                    ExpectedSeq::Any,
                    vec![a[1].clone(), a[0].clone()],
                )
            }
        }),
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || {
                let mut changed = a[0].clone();
                changed.data = json!({"other": true});
                (t.clone(), ExpectedSeq::Any, vec![changed, a[1].clone()])
            }
        }),
        Box::new({
            let (t, a) = (other.clone(), a.clone());
            move || {
                (
                    t.clone(),
                    ExpectedSeq::Any,
                    vec![a[0].clone(), a[1].clone()],
                )
            }
        }),
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || {
                (
                    t.clone(),
                    ExpectedSeq::Any,
                    vec![a[2].clone(), a[0].clone()],
                )
            }
        }),
        Box::new({
            let t = t1.clone();
            move || (t.clone(), ExpectedSeq::Exact(Seq(0)), vec![ev("X", 9)])
        }),
        Box::new({
            let t = t1.clone();
            move || (t.clone(), ExpectedSeq::Exact(Seq(5)), vec![ev("X", 9)])
        }),
        Box::new({
            let (t, a) = (t1.clone(), a.clone());
            move || (t.clone(), ExpectedSeq::Exact(Seq(2)), vec![a[2].clone()])
        }),
        Box::new({
            let (t, c) = (t1.clone(), c.clone());
            move || (t.clone(), ExpectedSeq::Exact(Seq(3)), vec![c.clone()])
        }),
        Box::new({
            let t = t1.clone();
            move || (t.clone(), ExpectedSeq::Exact(Seq(1)), vec![ev("X", 9)])
        }),
        Box::new({
            let t = other.clone();
            move || (t.clone(), ExpectedSeq::Exists, vec![ev("X", 9)])
        }),
        Box::new({
            let t = other.clone();
            move || (t.clone(), ExpectedSeq::Any, vec![ev("Y", 1)])
        }),
        Box::new({
            let t = t1.clone();
            move || (t.clone(), ExpectedSeq::Any, vec![])
        }),
        // Several events with an unstated head (the seqs come back from the insert).
        Box::new({
            let t = other.clone();
            move || {
                (
                    t.clone(),
                    ExpectedSeq::Any,
                    vec![ev("Y", 2), ev("Y", 3), ev("Y", 4)],
                )
            }
        }),
        Box::new({
            let t = other.clone();
            move || (t.clone(), ExpectedSeq::Exists, vec![ev("Y", 5), ev("Y", 6)])
        }),
        Box::new({
            let t = other.clone();
            move || {
                (
                    t.clone(),
                    ExpectedSeq::NoStream,
                    vec![ev("Y", 7), ev("Y", 8)],
                )
            }
        }),
        Box::new({
            let t = s("fresh-1");
            move || {
                (
                    t.clone(),
                    ExpectedSeq::Exists,
                    vec![ev("Y", 9), ev("Y", 10)],
                )
            }
        }),
        Box::new({
            let t = other.clone();
            move || {
                (
                    t.clone(),
                    ExpectedSeq::Exact(Seq(u64::MAX)),
                    vec![ev("Y", 11)],
                )
            }
        }),
        Box::new({
            let t = t1.clone();
            move || {
                (
                    t.clone(),
                    ExpectedSeq::Any,
                    vec![ev("Z", 1).with_metadata(json!(1))],
                )
            }
        }),
    ];
    for (i, op) in ops.iter().enumerate() {
        let (stream, expected, events) = op();
        let m = mem.append(stream.clone(), expected, events.clone()).await;
        let q = sql.append(stream, expected, events).await;
        assert_eq!(norm(&q), norm(&m), "op {i}");
    }

    // Multi-stream appends: all or nothing; replays mixed with writes.
    let multis: Vec<Vec<StreamAppend>> = vec![
        vec![
            StreamAppend::new(slug.clone(), ExpectedSeq::NoStream, b.to_vec()),
            StreamAppend::new(t1.clone(), ExpectedSeq::Exact(Seq(1)), vec![ev("M", 1)]),
        ],
        vec![
            StreamAppend::new(slug.clone(), ExpectedSeq::NoStream, b.to_vec()),
            StreamAppend::new(t1.clone(), ExpectedSeq::Exact(Seq(4)), vec![d.clone()]),
        ],
        vec![
            StreamAppend::new(slug.clone(), ExpectedSeq::NoStream, b.to_vec()),
            StreamAppend::new(t1.clone(), ExpectedSeq::Exact(Seq(4)), vec![d.clone()]),
        ],
        vec![
            StreamAppend::new(s("slug-other"), ExpectedSeq::NoStream, vec![ev("S", 1)]),
            StreamAppend::new(t1.clone(), ExpectedSeq::Any, vec![a[0].clone()]),
        ],
        vec![
            StreamAppend::new(s("slug-other"), ExpectedSeq::NoStream, vec![ev("S", 1)]),
            StreamAppend::new(slug.clone(), ExpectedSeq::Any, vec![b[1].clone()]),
        ],
        vec![
            StreamAppend::new(s("slug-other"), ExpectedSeq::NoStream, vec![ev("S", 1)]),
            StreamAppend::new(s("slug-other"), ExpectedSeq::Any, vec![ev("S", 2)]),
        ],
    ];
    for (i, m) in multis.into_iter().enumerate() {
        let mr = mem.append_multi(m.clone()).await;
        let qr = sql.append_multi(m).await;
        assert_eq!(norm(&qr), norm(&mr), "multi {i}");
    }

    // Transactions see their own appends; rollback and commit.
    for commit in [false, true] {
        let mut mt = mem.begin().await.unwrap();
        let mut qt = sql.begin().await.unwrap();
        let steps = [
            (s("tx-1"), ExpectedSeq::NoStream, vec![ev("T", 1)]),
            (s("tx-1"), ExpectedSeq::Exact(Seq(1)), vec![ev("T", 2)]),
            (s("tx-1"), ExpectedSeq::NoStream, vec![ev("T", 3)]),
        ];
        for (stream, expected, events) in steps {
            let m = mt.append(stream.clone(), expected, events.clone()).await;
            let q = qt.append(stream, expected, events).await;
            assert_eq!(norm(&q), norm(&m));
        }
        if commit {
            mt.commit().await.unwrap();
            qt.commit().await.unwrap();
        } else {
            mt.rollback().await.unwrap();
            qt.rollback().await.unwrap();
        }
    }

    // Reads: streams, the global log and its filters, unknown positions.
    for stream in [&t1, &slug, &other, &s("tx-1"), &s("none-1")] {
        for from in [0, 1, 2, 4, 99] {
            let m: Result<Vec<Envelope>, _> = mem
                .read_stream(stream.clone(), Seq(from))
                .try_collect()
                .await;
            let q: Result<Vec<Envelope>, _> = sql
                .read_stream(stream.clone(), Seq(from))
                .try_collect()
                .await;
            let (m, q) = (m.unwrap(), q.unwrap());
            assert_eq!(
                q.iter().map(norm_env).collect::<Vec<_>>(),
                m.iter().map(norm_env).collect::<Vec<_>>()
            );
        }
        assert_eq!(
            sql.stream_seq(stream.clone()).await.unwrap(),
            mem.stream_seq(stream.clone()).await.unwrap()
        );
    }
    let queries = [
        ReadAll::from_start(),
        ReadAll::after(Position(2)),
        ReadAll::after(Position(999)),
        ReadAll::from_start().category("tenant"),
        ReadAll::from_start().category("tenant_x"),
        ReadAll::from_start().category("tenant-1"),
        ReadAll::from_start().category("tenant_"),
        ReadAll::from_start().event_type("A"),
        ReadAll::after(Position(3))
            .category("tenant")
            .event_type("C"),
        ReadAll::after(Position(1000)).category("no-such"),
    ];
    for q in queries {
        let m = all(&mem, q.clone()).await;
        let r = all(&sql, q.clone()).await;
        let show = |r: &Result<Vec<Envelope>, StoreError>| match r {
            Ok(v) => v.iter().map(norm_env).collect::<Vec<_>>().join("\n"),
            Err(e) => e.code().to_string(),
        };
        assert_eq!(show(&r), show(&m), "{q:?}");
    }
    let everything = all(&sql, ReadAll::from_start()).await.unwrap();
    assert!(everything.len() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir, StoreOptions::default()).await;
    let b = open(&dir, StoreOptions::default()).await;
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        for store in [a.clone(), b.clone()] {
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                while done < 10 {
                    let seq = store.stream_seq(s("shared-1")).await.unwrap();
                    let expected = if w % 2 == 0 {
                        ExpectedSeq::Exact(seq)
                    } else {
                        ExpectedSeq::Any
                    };
                    match store
                        .append(s("shared-1"), expected, vec![ev("W", w)])
                        .await
                    {
                        Ok(r) => {
                            assert!(!r.replayed);
                            done += 1;
                        }
                        Err(StoreError::Conflict(c)) => assert!(c.current_seq > seq),
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read: Vec<Envelope> = a
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read.len(), 160);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(
            (e.seq, e.position),
            (Seq(i as u64 + 1), Position(i as u64 + 1))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_new_file_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = format!("sqlite:{}", path.display());
        tasks.push(tokio::spawn(async move {
            SqliteStore::open(&url, StoreOptions::default()).await
        }));
    }
    for t in tasks {
        let store = t.await.unwrap().unwrap();
        assert_eq!(store.log_len().await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_other_writers_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, StoreOptions::default()).await;
    let mut tx = store.begin().await.unwrap();
    tx.append(s("t-1"), ExpectedSeq::NoStream, vec![ev("A", 1)])
        .await
        .unwrap();
    let other = store.clone();
    let waiting = tokio::spawn(async move {
        other
            .append(s("t-1"), ExpectedSeq::NoStream, vec![ev("B", 1)])
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    // Not visible to readers before the commit.
    assert_eq!(store.stream_seq(s("t-1")).await.unwrap(), Seq(0));
    tx.commit().await.unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(err.as_conflict().unwrap().current_seq, Seq(1));
}

#[test]
fn opening_and_migrating_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let open = SqliteStore::open("unused.db", StoreOptions::default());
    let migrate = SqliteStore::migrate("unused.db");
    assert_send(&open);
    assert_send(&migrate);
}

#[tokio::test]
async fn the_store_checkpoints_its_wal_into_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, StoreOptions::default()).await;
    for n in 1..=20 {
        store
            .append(s("t-1"), ExpectedSeq::Any, vec![ev("A", n)])
            .await
            .unwrap();
    }
    // Far fewer pages than the writers' own checkpoint waits for: only the store's task copies
    // them into the database file. A copy of that file alone (no WAL) then holds the events.
    let copy = dir.path().join("copy.db");
    let mut found = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        std::fs::copy(dir.path().join("ledger.db"), &copy).unwrap();
        let url = format!("sqlite://{}?mode=ro", copy.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        // Before any checkpoint the file may not even hold the table.
        found = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        conn.close().await.unwrap();
        std::fs::remove_file(&copy).unwrap();
        if found == 20 {
            break;
        }
    }
    assert_eq!(
        found, 20,
        "the database file holds every event without its WAL"
    );
    drop(store);
}
