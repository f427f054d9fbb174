//! The database itself (no memory backend): the events table refuses UPDATE and DELETE, schema
//! versions are checked on open, SQLite creates a missing file, a reopened store sees the log.

use ledger_core::{ExpectedSeq, Seq, StoreError};
use ledger_tests::backend::{Db, Kind};
use ledger_tests::fixtures::*;
use serde_json::json;

/// Migrates a fresh database; returns the schema version it is at.
async fn migrated(db: &Db) -> i64 {
    let (from, to) = db
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrating {db}: {e}"));
    assert_eq!(from, 0, "a fresh database starts at version 0");
    assert!(to >= 1);
    to
}

/// Records a migration this code does not know, as a newer ledger would.
async fn fake_newer_migration(db: &Db, version: i64) {
    let checksum = match db.kind {
        Kind::Postgres => "'\\x00'::bytea",
        Kind::Sqlite => "X'00'",
    };
    let sql = format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({version}, 'from a newer ledger', TRUE, {checksum}, 0)"
    );
    db.execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The `SchemaMismatch` an open must fail with.
async fn mismatch(db: &Db) -> (i64, i64, String) {
    match db.open(ledger_tests::options()).await {
        Err(e @ StoreError::SchemaMismatch { found, needed }) => {
            assert_eq!(e.code(), "schema_mismatch");
            (found, needed, e.to_string())
        }
        Err(e) => panic!("opening {db}: expected a schema mismatch, got {e:?}"),
        Ok(_) => panic!("opening {db}: expected a schema mismatch, the store opened"),
    }
}

store_test!(databases: events_are_append_only, |db| async move {
    migrated(&db).await;
    let store = db.open(ledger_tests::options()).await.unwrap();
    let s = stream("audit-1");
    store.append(s.clone(), ExpectedSeq::NoStream, evs("Fact", 3)).await.unwrap();
    let before = whole_log(&*store).await;

    let mut refused = vec![
        "UPDATE events SET event_type = 'Forged'",
        "UPDATE events SET data = metadata WHERE seq = 2",
        "DELETE FROM events",
        "DELETE FROM events WHERE seq = 3",
    ];
    if db.kind == Kind::Postgres {
        refused.push("TRUNCATE events");
    }
    for sql in refused {
        let err = db
            .execute(sql)
            .await
            .expect_err(&format!("the database accepted {sql:?}"));
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(whole_log(&*store).await, before, "the events table changed");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM events").await, 3);

    // Appends go on as before.
    let r = store.append(s.clone(), ExpectedSeq::Exact(Seq(3)), evs("Fact", 1)).await.unwrap();
    assert_eq!(r.last_seq, Seq(4));
});

store_test!(databases: migrations_are_idempotent_and_a_reopened_store_sees_the_log, |db| async move {
    let version = migrated(&db).await;
    assert_eq!(db.migrate().await.unwrap(), (version, version));
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await,
        version,
        "one row per migration"
    );
    let s = stream("keep-1");
    let events = evs("Kept", 4);
    {
        let store = db.open(ledger_tests::options()).await.unwrap();
        store.append(s.clone(), ExpectedSeq::NoStream, events.clone()).await.unwrap();
    }
    let store = db.open(ledger_tests::options()).await.unwrap();
    assert_stored(&read_stream(&*store, &s, 1).await, &s, 1, &events);
    assert_eq!(db.migrate().await.unwrap(), (version, version));
    assert_eq!(seq_of(&*store, &s).await, 4);
});

store_test!(databases: a_database_migrated_by_a_newer_ledger_is_refused, |db| async move {
    let version = migrated(&db).await;
    let store = db.open(ledger_tests::options()).await.unwrap();
    store.append(stream("old-1"), ExpectedSeq::NoStream, evs("Old", 1)).await.unwrap();
    drop(store);
    fake_newer_migration(&db, version + 1).await;

    let (found, needed, message) = mismatch(&db).await;
    assert_eq!((found, needed), (version + 1, version));
    assert!(message.contains("newer ledger") && message.contains("upgrade"), "{message}");
    assert!(!message.contains("apply the ledger's migrations"), "{message}");
    // Migrating does not paper over it either.
    let err = db.migrate().await.expect_err("migrate accepted a newer schema");
    assert!(matches!(err, StoreError::SchemaMismatch { found: f, needed: n } if f == version + 1 && n == version), "{err:?}");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM events").await, 1, "the log was touched");
});

store_test!(databases: an_empty_postgres_database_needs_migrating, |db| async move {
    match db.kind {
        Kind::Postgres => {
            let (found, needed, message) = mismatch(&db).await;
            assert_eq!(found, 0);
            assert!(
                message.contains("apply the ledger's migrations"),
                "the message does not say what to do: {message}"
            );
            assert_eq!(db.migrate().await.unwrap(), (0, needed));
            let store = db.open(ledger_tests::options()).await.unwrap();
            assert!(whole_log(&*store).await.is_empty());
        }
        Kind::Sqlite => {
            // A missing SQLite file is created, migrated and usable.
            let path = db.sqlite_path().expect("a SQLite database has a file");
            assert!(!path.exists());
            let store = db.open(ledger_tests::options()).await.unwrap();
            assert!(path.exists(), "opening did not create {}", path.display());
            let s = stream("fresh-1");
            let r = store.append(s.clone(), ExpectedSeq::NoStream, vec![ev("Made", json!({"k": 1}))]).await.unwrap();
            assert_eq!(r.last_seq, Seq(1));
            assert_eq!(read_stream(&*store, &s, 1).await.len(), 1);
            let version = db.scalar("SELECT MAX(version) FROM _sqlx_migrations").await;
            assert_eq!(db.migrate().await.unwrap(), (version, version));
        }
    }
});
