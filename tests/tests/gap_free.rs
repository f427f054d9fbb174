//! No reader skips an event: a transaction that appends, then holds for a while before it
//! commits, must not let a polling reader advance past its events while other writers commit.
//! Also the transactions themselves: staged appends, rollback, conflicts inside a transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ledger_core::{ExpectedSeq, Position, ReadAll, Seq, StoreOptions};
use ledger_tests::fixtures::*;
use serde_json::json;
use uuid::Uuid;

use ExpectedSeq::{Exact, NoStream};

/// Concurrent writers that commit while the slow transaction holds.
const WRITERS: usize = 4;
/// Appends per concurrent writer.
const APPENDS: usize = 5;

store_test!(
    a_slow_transaction_is_not_skipped,
    options = StoreOptions {
        // Global reads give up waiting for in-flight transactions quickly, so the reader
        // polls many times while the slow transaction holds.
        settle_timeout: Duration::from_millis(100),
        ..ledger_tests::options()
    },
    |store| async move {
        let mut appended: Vec<Uuid> = Vec::new();
        let seed = evs("Seeded", 2);
        appended.extend(new_ids(&seed));
        store
            .append(stream("seed-1"), NoStream, seed)
            .await
            .unwrap();

        // The reader polls the log from its checkpoint until told to stop and it has seen
        // as many events as were appended.
        let done = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicUsize::new(usize::MAX));
        let reader = {
            let (store, done, total) = (store.clone(), done.clone(), total.clone());
            tokio::spawn(async move {
                let mut checkpoint = Position::START;
                let mut seen: Vec<Uuid> = Vec::new();
                let mut polls = 0usize;
                let mut deadline = None;
                loop {
                    let finishing = done.load(Ordering::SeqCst);
                    let page = try_read_all(&*store, ReadAll::after(checkpoint))
                        .await
                        .unwrap_or_else(|e| panic!("poll {polls} after {checkpoint}: {e}"));
                    polls += 1;
                    if let Some(last) = page.last() {
                        checkpoint = last.position;
                    }
                    seen.extend(ids(&page));
                    if finishing {
                        if seen.len() >= total.load(Ordering::SeqCst) {
                            // One more poll: it must bring nothing new.
                            let rest = try_read_all(&*store, ReadAll::after(checkpoint))
                                .await
                                .unwrap();
                            seen.extend(ids(&rest));
                            break;
                        }
                        // Only a broken store gets here; the comparison below says what is missing.
                        let d = *deadline
                            .get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                        if Instant::now() > d {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (seen, polls)
            })
        };

        // The slow transaction appends first, so its events are older than the others'.
        let mut tx = store.begin().await.unwrap();
        let held = evs("Held", 3);
        appended.extend(new_ids(&held));
        let r = tx.append(stream("held-1"), NoStream, held).await.unwrap();
        assert_eq!((r.first_seq, r.last_seq), (Seq(1), Seq(3)));

        // Other writers append and commit meanwhile (on SQLite and memory they wait for the
        // transaction; they are spawned, not awaited, so the transaction can go on).
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let batch: Vec<_> = (0..APPENDS)
                .map(|i| ev("Other", json!({"w": w, "i": i})))
                .collect();
            appended.extend(new_ids(&batch));
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let s = stream(&format!("other-{w}"));
                for (i, e) in batch.into_iter().enumerate() {
                    store
                        .append(s.clone(), Exact(Seq(i as u64)), vec![e])
                        .await
                        .unwrap_or_else(|err| panic!("{s} at {i}: {err}"));
                }
            }));
        }

        // Hold, append once more in the transaction, hold again, then commit.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let more = evs("HeldLater", 2);
        appended.extend(new_ids(&more));
        let r = tx.append(stream("held-2"), NoStream, more).await.unwrap();
        assert_eq!(r.last_seq, Seq(2));
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.commit().await.unwrap();

        for w in writers {
            w.await.expect("a writer panicked");
        }
        total.store(appended.len(), Ordering::SeqCst);
        done.store(true, Ordering::SeqCst);
        let (mut seen, _polls) = reader.await.expect("the reader panicked");

        let mut want = appended.clone();
        want.sort();
        seen.sort();
        let mut dupes = seen.clone();
        dupes.dedup();
        assert_eq!(dupes.len(), seen.len(), "the reader saw an event twice");
        let missing: Vec<_> = want
            .iter()
            .filter(|id| seen.binary_search(id).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "the reader skipped {} events: {missing:?}",
            missing.len()
        );
        assert_eq!(seen, want, "the reader saw events nobody appended");
    }
);

store_test!(
    transactions_stage_roll_back_and_commit,
    |store| async move {
        let s = stream("txn-1");

        // Staged appends see each other; a rollback leaves no trace.
        let mut tx = store.begin().await.unwrap();
        let r = tx.append(s.clone(), NoStream, evs("A", 2)).await.unwrap();
        assert_eq!((r.first_seq, r.last_seq), (Seq(1), Seq(2)));
        let r = tx
            .append(s.clone(), Exact(Seq(2)), evs("B", 1))
            .await
            .unwrap();
        assert_eq!((r.first_seq, r.last_seq), (Seq(3), Seq(3)));
        tx.rollback().await.unwrap();
        assert_eq!(seq_of(&*store, &s).await, 0);
        assert!(whole_log(&*store).await.is_empty());

        // A committed transaction is visible with the seqs it was given.
        let mut tx = store.begin().await.unwrap();
        let a = evs("A", 2);
        let b = evs("B", 1);
        tx.append(s.clone(), NoStream, a.clone()).await.unwrap();
        let r = tx
            .append(stream("txn-2"), NoStream, b.clone())
            .await
            .unwrap();
        assert_eq!(r.last_seq, Seq(1));
        tx.commit().await.unwrap();
        assert_stored(&read_stream(&*store, &s, 1).await, &s, 1, &a);
        assert_stored(
            &read_stream(&*store, &stream("txn-2"), 1).await,
            &stream("txn-2"),
            1,
            &b,
        );

        // A conflict inside a transaction is the same conflict; the transaction is rolled back.
        let mut tx = store.begin().await.unwrap();
        let c = conflict(tx.append(s.clone(), NoStream, evs("C", 1)).await);
        assert_eq!(
            (&c.stream, c.expected, c.current_seq),
            (&s, NoStream, Seq(2))
        );
        assert_eq!(ids(&c.missed), new_ids(&a));
        tx.rollback().await.unwrap();
        assert_eq!(whole_log(&*store).await.len(), 3);

        // A dropped transaction is rolled back too, and writers go on after it.
        let mut tx = store.begin().await.unwrap();
        tx.append(s.clone(), Exact(Seq(2)), evs("D", 1))
            .await
            .unwrap();
        drop(tx);
        let r = store
            .append(s.clone(), Exact(Seq(2)), evs("E", 1))
            .await
            .unwrap();
        assert_eq!(r.last_seq, Seq(3));
        assert_eq!(whole_log(&*store).await.len(), 4);
    }
);
