//! Group commit: appends that arrive together are written together (one transaction for many
//! of them) and keep every chain whole, a lone append is written at once, and grouping can be
//! turned off.

use std::sync::Arc;

use futures::TryStreamExt;
use ledger_core::verify::ChainWalker;
use ledger_core::{ChainScope, ExpectedSeq, GroupLimits, StoreOptions};
use ledger_tests::backend::{Db, Kind};
use ledger_tests::fixtures::*;
use serde_json::json;
use tokio::sync::Barrier;

/// Appends arriving at once.
const APPENDS: usize = 64;

/// Appends `APPENDS` single events to as many new streams at once; every one succeeds.
async fn append_together(store: &ledger_tests::Store) {
    let barrier = Arc::new(Barrier::new(APPENDS));
    let mut tasks = Vec::new();
    for i in 0..APPENDS {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let s = stream(&format!("grouped-{i}"));
            store
                .append(
                    s,
                    ExpectedSeq::NoStream,
                    vec![ev("Grouped", json!({"i": i}))],
                )
                .await
        }));
    }
    for task in tasks {
        let result = task.await.expect("an appending task panicked");
        assert!(result.is_ok(), "{result:?}");
    }
}

/// Transactions the appends took: distinct transaction ids on PostgreSQL; on SQLite, frames
/// written to the WAL (each transaction writes at least the table's and two indexes' pages).
async fn transactions_written(db: &Db) -> i64 {
    match db.kind {
        Kind::Postgres => {
            db.scalar("SELECT count(DISTINCT tx_id) FROM events WHERE stream LIKE 'grouped-%'")
                .await
        }
        Kind::Sqlite => {
            let mut wal = db.sqlite_path().expect("an SQLite file").into_os_string();
            wal.push("-wal");
            let bytes = std::fs::metadata(&wal).map_or(0, |m| m.len()) as i64;
            let page_size = db.scalar("PRAGMA page_size").await;
            // A WAL frame is a page and a 24-byte header.
            bytes / (page_size + 24) / 3
        }
    }
}

/// Empties the SQLite WAL, so that what the appends write is counted alone.
async fn reset_wal(db: &Db) {
    if db.kind == Kind::Sqlite {
        db.scalar("PRAGMA wal_checkpoint(TRUNCATE)").await;
    }
}

store_test!(databases: appends_that_arrive_together_commit_together, |db| async move {
    db.migrate().await.unwrap();
    let store = db.open(ledger_tests::options()).await.unwrap();
    reset_wal(&db).await;
    append_together(&store).await;
    let transactions = transactions_written(&db).await;
    assert!(
        transactions < (APPENDS / 2) as i64,
        "{APPENDS} appends arriving together took about {transactions} transactions on {db}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE stream LIKE 'grouped-%'")
            .await,
        APPENDS as i64
    );
});

store_test!(databases: without_grouping_each_append_is_its_own_transaction, |db| async move {
    let options = StoreOptions {
        group: GroupLimits {
            max_appends: 1,
            ..GroupLimits::default()
        },
        ..ledger_tests::options()
    };
    db.migrate().await.unwrap();
    let store = db.open(options).await.unwrap();
    reset_wal(&db).await;
    append_together(&store).await;
    let transactions = transactions_written(&db).await;
    assert!(
        transactions >= APPENDS as i64,
        "{APPENDS} appends without grouping took about {transactions} transactions on {db}"
    );
});

store_test!(grouped_appends_keep_every_chain_whole, |store| async move {
    // Waves of appends arriving at once, several to the same stream, batches of 1 to 3: every
    // chain verifies and every stream is gapless.
    let streams = 8;
    let mut written = vec![0u64; streams];
    for wave in 0..4 {
        let barrier = Arc::new(Barrier::new(APPENDS));
        let mut tasks = Vec::new();
        for i in 0..APPENDS {
            let (store, barrier) = (store.clone(), barrier.clone());
            let events: Vec<_> = (0..1 + i % 3)
                .map(|k| ev("Grouped", json!({"wave": wave, "i": i, "k": k})))
                .collect();
            written[i % streams] += events.len() as u64;
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let s = stream(&format!("chained-{}", i % streams));
                store.append(s, ExpectedSeq::Any, events).await
            }));
        }
        for task in tasks {
            let result = task.await.expect("an appending task panicked");
            assert!(result.is_ok(), "{result:?}");
        }
    }
    let mut walker = ChainWalker::new(true);
    let mut breaks = Vec::new();
    let chained: Vec<_> = store
        .chains(ChainScope::default())
        .try_collect()
        .await
        .expect("reading the chains");
    for e in chained {
        breaks.extend(walker.push(e));
    }
    breaks.extend(walker.finish());
    assert!(breaks.is_empty(), "{breaks:?}");
    for (k, &n) in written.iter().enumerate() {
        let s = stream(&format!("chained-{k}"));
        let seqs: Vec<u64> = store
            .read_stream(s, ledger_core::Seq(1))
            .map_ok(|e| e.seq.0)
            .try_collect()
            .await
            .expect("reading a stream");
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "stream chained-{k}");
    }
});
