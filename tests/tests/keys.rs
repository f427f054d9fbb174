//! The key table: a subject's key is made once and racing writers get that one; erasure
//! destroys it for good and leaves a tombstone (also for a subject that had none); lookups in
//! bulk; export and import of the rows; on the databases, the destroyed bytes are gone from
//! the files (SQLite) and the dump (PostgreSQL), and the table's CHECKs hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_core::{DataKey, KeyRecord, KeyState};
use ledger_tests::Store;
use ledger_tests::backend::{Db, Kind};

/// A key of 32 bytes nobody else has, so that finding them on disk means finding this key.
fn fresh_key() -> DataKey {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::now_v7().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v5(&uuid::Uuid::now_v7(), b"key").as_bytes());
    DataKey(bytes)
}

/// The key as lowercase hex.
fn hex(key: &DataKey) -> String {
    key.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The live key `state` holds; panics if it is erased.
fn live(state: KeyState) -> DataKey {
    match state {
        KeyState::Live(key) => key,
        KeyState::Erased(at) => panic!("expected a live key, the subject was erased at {at}"),
    }
}

/// When `state` was erased; panics if it is live.
fn erased(state: KeyState) -> DateTime<Utc> {
    match state {
        KeyState::Erased(at) => at,
        KeyState::Live(_) => panic!("expected an erased subject, it has a live key"),
    }
}

/// Asserts that `at` is the time of a change made between `before` and `after` (give or take
/// the databases' microseconds and clocks).
fn assert_between(at: DateTime<Utc>, before: DateTime<Utc>, after: DateTime<Utc>) {
    let slack = chrono::Duration::seconds(2);
    assert!(
        before - slack <= at && at <= after + slack,
        "{at} is not between {before} and {after}"
    );
}

/// A time the databases store exactly (microseconds).
fn at(seconds: i64, micros: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, micros * 1000).unwrap()
}

/// The state of one subject, looked up with `keys`.
async fn state_of(store: &Store, subject: &str) -> Option<KeyState> {
    let subjects = [subject.to_string()];
    let mut found = store.keys(&subjects).await.unwrap();
    assert!(found.len() <= 1, "{found:?}");
    found.remove(subject)
}

store_test!(a_key_is_made_once_and_returned_again, |store| async move {
    let key = fresh_key();
    let before = Utc::now();
    let state = store.key_for_writing("t-1", key.clone()).await.unwrap();
    assert_eq!(state, KeyState::Live(key.clone()));
    // Asked again with another fresh key: the stored one.
    let again = store.key_for_writing("t-1", fresh_key()).await.unwrap();
    assert_eq!(again, KeyState::Live(key.clone()));
    assert_eq!(
        state_of(&store, "t-1").await,
        Some(KeyState::Live(key.clone()))
    );
    // Another subject gets its own.
    let other = fresh_key();
    assert_eq!(
        store.key_for_writing("t-2", other.clone()).await.unwrap(),
        KeyState::Live(other)
    );
    let records = store.key_records().await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].subject.as_str(), records[0].key.as_ref()),
        ("t-1", Some(&key))
    );
    assert_eq!(records[0].erased_at, None);
    assert_between(records[0].created_at, before, Utc::now());
});

store_test!(
    racing_writers_all_get_the_one_stored_key,
    |store| async move {
        const WRITERS: usize = 32;
        for round in 0..3 {
            let subject = format!("race-{round}");
            let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
            let tasks: Vec<_> = (0..WRITERS)
                .map(|_| {
                    let (store, start, subject) = (store.clone(), start.clone(), subject.clone());
                    tokio::spawn(async move {
                        let mine = fresh_key();
                        start.wait().await;
                        let got =
                            live(store.key_for_writing(&subject, mine.clone()).await.unwrap());
                        (mine, got)
                    })
                })
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            let stored = live(
                state_of(&store, &subject)
                    .await
                    .expect("the subject has a row"),
            );
            assert!(
                results.iter().all(|(_, got)| *got == stored),
                "{subject}: writers got different keys"
            );
            let winners = results.iter().filter(|(mine, _)| *mine == stored).count();
            assert_eq!(
                winners, 1,
                "{subject}: the stored key is exactly one writer's"
            );
        }
        assert_eq!(store.key_records().await.unwrap().len(), 3);
    }
);

store_test!(keys_returns_the_held_subjects_only, |store| async move {
    assert!(store.keys(&[]).await.unwrap().is_empty());
    assert!(
        store
            .keys(&["nobody".to_string()])
            .await
            .unwrap()
            .is_empty()
    );
    // More subjects than one SQLite statement binds, half of them held.
    let subjects: Vec<String> = (0..1203).map(|i| format!("bulk-{i:04}")).collect();
    let mut expected = HashMap::new();
    for subject in subjects.iter().step_by(2) {
        let key = fresh_key();
        store.key_for_writing(subject, key.clone()).await.unwrap();
        expected.insert(subject.clone(), KeyState::Live(key));
    }
    store.destroy_key("bulk-0000").await.unwrap();
    let found = store.keys(&subjects).await.unwrap();
    assert_eq!(found.len(), 602);
    assert!(matches!(found["bulk-0000"], KeyState::Erased(_)));
    expected.remove("bulk-0000");
    for (subject, state) in &expected {
        assert_eq!(found.get(subject), Some(state), "{subject}");
    }
    assert!(!found.contains_key("bulk-0001"));
    // A subject asked for twice is answered once.
    let twice = [
        "bulk-0002".to_string(),
        "bulk-0002".to_string(),
        "bulk-0003".to_string(),
    ];
    let found = store.keys(&twice).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found.get("bulk-0002"), expected.get("bulk-0002"));
});

store_test!(a_destroyed_key_stays_destroyed, |store| async move {
    let key = fresh_key();
    store.key_for_writing("gone-1", key.clone()).await.unwrap();
    let before = Utc::now();
    assert!(
        store.destroy_key("gone-1").await.unwrap(),
        "a live key was destroyed"
    );
    let after = Utc::now();
    let when = erased(
        state_of(&store, "gone-1")
            .await
            .expect("the tombstone stays"),
    );
    assert_between(when, before, after);
    // Destroying again finds no live key and keeps the first erasure's time.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!store.destroy_key("gone-1").await.unwrap());
    assert_eq!(
        state_of(&store, "gone-1").await,
        Some(KeyState::Erased(when))
    );
    // No key is made for it again, and the fresh one is not stored.
    let state = store.key_for_writing("gone-1", fresh_key()).await.unwrap();
    assert_eq!(state, KeyState::Erased(when));
    let records = store.key_records().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, None);
    assert_eq!(records[0].erased_at, Some(when));
    assert!(records[0].created_at <= when);
});

store_test!(
    destroying_an_unknown_subject_leaves_a_tombstone,
    |store| async move {
        let before = Utc::now();
        assert!(
            !store.destroy_key("never-1").await.unwrap(),
            "there was no key to destroy"
        );
        let after = Utc::now();
        let when = erased(state_of(&store, "never-1").await.expect("a tombstone"));
        assert_between(when, before, after);
        assert_eq!(
            store.key_for_writing("never-1", fresh_key()).await.unwrap(),
            KeyState::Erased(when)
        );
        assert!(!store.destroy_key("never-1").await.unwrap());
        let records = store.key_records().await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key, None);
        assert_eq!(
            (records[0].created_at, records[0].erased_at),
            (when, Some(when))
        );
    }
);

store_test!(
    key_records_list_live_and_erased_rows_by_subject,
    |store| async move {
        assert!(store.key_records().await.unwrap().is_empty());
        let (b, c) = (fresh_key(), fresh_key());
        store.key_for_writing("c", c.clone()).await.unwrap();
        store.key_for_writing("b", b.clone()).await.unwrap();
        store.key_for_writing("a", fresh_key()).await.unwrap();
        store.destroy_key("a").await.unwrap();
        store.destroy_key("B-tombstone").await.unwrap();
        let records = store.key_records().await.unwrap();
        let subjects: Vec<&str> = records.iter().map(|r| r.subject.as_str()).collect();
        // Bytewise order, uppercase first.
        assert_eq!(subjects, ["B-tombstone", "a", "b", "c"]);
        let states: Vec<KeyState> = records.iter().map(KeyRecord::state).collect();
        assert!(matches!(states[0], KeyState::Erased(_)));
        assert!(matches!(states[1], KeyState::Erased(_)));
        assert_eq!(states[2..], [KeyState::Live(b), KeyState::Live(c)]);
        for r in &records {
            assert_ne!(r.key.is_some(), r.erased_at.is_some(), "{r:?}");
        }
    }
);

store_test!(
    an_import_into_an_empty_store_round_trips,
    |store| async move {
        let records = vec![
            KeyRecord {
                subject: "imp-a".into(),
                key: Some(fresh_key()),
                created_at: at(1_700_000_000, 123_456),
                erased_at: None,
            },
            KeyRecord {
                subject: "imp-b".into(),
                key: None,
                created_at: at(1_700_000_100, 1),
                erased_at: Some(at(1_700_000_200, 999_999)),
            },
            KeyRecord {
                subject: "imp-c".into(),
                key: Some(fresh_key()),
                created_at: at(1_600_000_000, 0),
                erased_at: None,
            },
        ];
        assert_eq!(store.import_keys(records.clone()).await.unwrap(), 3);
        assert_eq!(store.key_records().await.unwrap(), records);
        // The export's JSON lines load the same.
        let lines: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        let parsed: Vec<KeyRecord> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed, records);
        // Loading it again writes nothing.
        assert_eq!(store.import_keys(parsed).await.unwrap(), 0);
        assert_eq!(store.key_records().await.unwrap(), records);
        assert_eq!(store.import_keys(Vec::new()).await.unwrap(), 0);
    }
);

store_test!(
    an_import_keeps_held_rows_except_that_erased_records_destroy_keys,
    |store| async move {
        let (kept, doomed) = (fresh_key(), fresh_key());
        store
            .key_for_writing("live-kept", kept.clone())
            .await
            .unwrap();
        store
            .key_for_writing("live-doomed", doomed.clone())
            .await
            .unwrap();
        store.destroy_key("erased-early").await.unwrap();
        let early = erased(state_of(&store, "erased-early").await.unwrap());
        store.destroy_key("erased-revived").await.unwrap();
        let revived_at = erased(state_of(&store, "erased-revived").await.unwrap());
        let then = at(1_700_000_000, 0);
        let erased_then = at(1_700_000_500, 250);
        let new_key = fresh_key();
        let record =
            |subject: &str, key: Option<DataKey>, erased_at: Option<DateTime<Utc>>| KeyRecord {
                subject: subject.into(),
                key,
                created_at: then,
                erased_at,
            };
        let written = store
            .import_keys(vec![
                // A held live key is not replaced.
                record("live-kept", Some(fresh_key()), None),
                // An erased record destroys a live key.
                record("live-doomed", None, Some(erased_then)),
                // Erased rows stay erased, with their own time.
                record("erased-early", None, Some(erased_then)),
                record("erased-revived", Some(fresh_key()), None),
                // New subjects are loaded.
                record("new-live", Some(new_key.clone()), None),
                record("new-erased", None, Some(erased_then)),
            ])
            .await
            .unwrap();
        assert_eq!(written, 3, "live-doomed, new-live and new-erased");
        let subjects: Vec<String> = [
            "live-kept",
            "live-doomed",
            "erased-early",
            "erased-revived",
            "new-live",
            "new-erased",
        ]
        .map(String::from)
        .to_vec();
        let found = store.keys(&subjects).await.unwrap();
        assert_eq!(found["live-kept"], KeyState::Live(kept));
        assert_eq!(found["live-doomed"], KeyState::Erased(erased_then));
        assert_eq!(found["erased-early"], KeyState::Erased(early));
        assert_eq!(found["erased-revived"], KeyState::Erased(revived_at));
        assert_eq!(found["new-live"], KeyState::Live(new_key));
        assert_eq!(found["new-erased"], KeyState::Erased(erased_then));
        assert_eq!(
            store.key_for_writing("live-doomed", doomed).await.unwrap(),
            KeyState::Erased(erased_then)
        );
        let records = store.key_records().await.unwrap();
        let doomed_row = records.iter().find(|r| r.subject == "live-doomed").unwrap();
        assert_eq!(doomed_row.key, None, "the destroyed key is not exported");
    }
);

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The bytes of the SQLite database file and its WAL (empty when there is none).
fn sqlite_files(db: &Db) -> Vec<(String, Vec<u8>)> {
    let path = db.sqlite_path().expect("a SQLite database has a file");
    let wal = path.with_file_name(format!(
        "{}-wal",
        path.file_name().unwrap().to_string_lossy()
    ));
    [path, wal]
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).unwrap_or_default(),
            )
        })
        .collect()
}

/// `pg_dump` of the whole database.
fn pg_dump(db: &Db) -> String {
    let out = std::process::Command::new("pg_dump")
        .arg("--no-owner")
        .arg(&db.url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a page of the key table (live or dead rows, free space) holds `key`.
async fn pg_pages_hold(db: &Db, key: &DataKey) -> bool {
    db.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .await
        .unwrap();
    let pages = db
        .scalar("SELECT pg_relation_size('ledger_keys') / current_setting('block_size')::bigint")
        .await;
    let sql = format!(
        "SELECT count(*) FROM generate_series(0, {}) AS p \
         WHERE position('\\x{}'::bytea IN get_raw_page('ledger_keys', p::int)) > 0",
        pages - 1,
        hex(key)
    );
    db.scalar(&sql).await > 0
}

/// Asserts that none of `keys` is in the database's files (SQLite) or in its dump and the
/// key table's pages (PostgreSQL), or, with `held`, that each of them is.
async fn assert_on_disk(db: &Db, keys: &[(usize, DataKey)], held: bool) {
    match db.kind {
        Kind::Sqlite => {
            let files = sqlite_files(db);
            for (i, key) in keys {
                let found: Vec<&str> = files
                    .iter()
                    .filter(|(_, bytes)| contains(bytes, &key.0))
                    .map(|(file, _)| file.as_str())
                    .collect();
                assert_eq!(!found.is_empty(), held, "key {i} in {found:?}");
            }
        }
        Kind::Postgres => {
            let dump = pg_dump(db);
            for (i, key) in keys {
                assert_eq!(dump.contains(&hex(key)), held, "key {i} in the dump");
                assert_eq!(
                    pg_pages_hold(db, key).await,
                    held,
                    "key {i} in a page of the table"
                );
            }
        }
    }
}

store_test!(databases: a_destroyed_key_leaves_no_bytes_behind, |db| async move {
    const N: usize = 300;
    db.migrate().await.unwrap();
    let store = db.open(ledger_tests::options()).await.unwrap();
    // Enough neighbours for the table to span pages that split as rows arrive out of order.
    let subject = |i: usize| format!("tenant-{i:04}");
    let keys: Vec<DataKey> = (0..N).map(|_| fresh_key()).collect();
    let order = |range: std::ops::Range<usize>| range.map(|j| (j * 7919) % N);
    for i in order(0..N).filter(|&i| i % 2 == 0) {
        store.key_for_writing(&subject(i), keys[i].clone()).await.unwrap();
    }
    let first: Vec<usize> = vec![0, 98, 200, 298];
    let picked = |is: &[usize]| is.iter().map(|&i| (i, keys[i].clone())).collect::<Vec<_>>();
    // Otherwise the check would prove nothing.
    assert_on_disk(&db, &picked(&first), true).await;
    for &i in &first {
        assert!(store.destroy_key(&subject(i)).await.unwrap());
    }
    assert_on_disk(&db, &picked(&first), false).await;

    // More rows move the pages around; then keys go by destroy and by import.
    for i in order(0..N).filter(|&i| i % 2 == 1) {
        store.key_for_writing(&subject(i), keys[i].clone()).await.unwrap();
    }
    let second: Vec<usize> = vec![1, 2, 150, 151, 299];
    for &i in &second[..3] {
        assert!(store.destroy_key(&subject(i)).await.unwrap());
    }
    let erased_at = at(1_700_000_000, 0);
    let records = second[3..]
        .iter()
        .map(|&i| KeyRecord {
            subject: subject(i),
            key: None,
            created_at: erased_at,
            erased_at: Some(erased_at),
        })
        .collect();
    assert_eq!(store.import_keys(records).await.unwrap(), 2);
    let doomed: Vec<usize> = first.iter().chain(&second).copied().collect();
    assert_on_disk(&db, &picked(&doomed), false).await;
    // The others are untouched, and still on disk.
    assert_on_disk(&db, &picked(&[3, 149, 297]), true).await;
    let subjects: Vec<String> = (0..N).map(subject).collect();
    let found = store.keys(&subjects).await.unwrap();
    for (i, key) in keys.iter().enumerate() {
        let state = &found[&subjects[i]];
        if doomed.contains(&i) {
            assert!(matches!(state, KeyState::Erased(_)), "{i}");
        } else {
            assert_eq!(state, &KeyState::Live(key.clone()), "{i}");
        }
    }
});

store_test!(databases: the_key_table_checks_its_rows_and_may_change, |db| async move {
    db.migrate().await.unwrap();
    let store = db.open(ledger_tests::options()).await.unwrap();
    store.key_for_writing("held", fresh_key()).await.unwrap();
    store.destroy_key("erased").await.unwrap();
    let pg = db.kind == Kind::Postgres;
    let bytes = |n: usize| {
        let hex = "ab".repeat(n);
        if pg { format!("'\\x{hex}'::bytea") } else { format!("X'{hex}'") }
    };
    let now = if pg { "now()" } else { "'2024-01-01T00:00:00.000000Z'" };
    let insert = |subject: &str, key: &str, erased_at: &str| {
        format!(
            "INSERT INTO ledger_keys (subject, key, created_at, erased_at) \
             VALUES ('{subject}', {key}, {now}, {erased_at})"
        )
    };
    let refused = [
        (insert("both", &bytes(32), now), "ledger_keys_key_or_erased"),
        (insert("neither", "NULL", "NULL"), "ledger_keys_key_or_erased"),
        (insert("short", &bytes(31), "NULL"), "ledger_keys_key_length"),
        (insert("long", &bytes(33), "NULL"), "ledger_keys_key_length"),
        (
            format!("UPDATE ledger_keys SET key = {} WHERE subject = 'erased'", bytes(32)),
            "ledger_keys_key_or_erased",
        ),
        (
            format!("UPDATE ledger_keys SET erased_at = {now} WHERE subject = 'held'"),
            "ledger_keys_key_or_erased",
        ),
    ];
    for (sql, constraint) in refused {
        let err = db.execute(&sql).await.expect_err(&format!("the database accepted {sql}"));
        assert!(err.contains(constraint), "{sql}: {err}");
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM ledger_keys").await, 2);
    // No trigger guards the table: a valid change goes through.
    let sql =
        format!("UPDATE ledger_keys SET key = NULL, erased_at = {now} WHERE subject = 'held'");
    assert_eq!(db.execute(&sql).await, Ok(1));
    assert!(matches!(state_of(&store, "held").await, Some(KeyState::Erased(_))));
});
