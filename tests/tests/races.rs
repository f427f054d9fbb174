//! Many tasks append to one stream with the same expectation: exactly one wins each round, the
//! others get conflicts that report the winner's seq and events, and the stream stays gapless.

use std::collections::HashMap;

use ledger_core::{ExpectedSeq, NewEvent, Seq};
use ledger_tests::fixtures::*;
use serde_json::json;
use uuid::Uuid;

/// Tasks per round.
const TASKS: usize = 32;
/// Rounds.
const ROUNDS: usize = 30;

store_test!(one_writer_wins_each_round, |store| async move {
    let s = stream("race-1");
    let mut expected = 0u64;
    let mut winners: Vec<Vec<NewEvent>> = Vec::new();
    for round in 0..ROUNDS {
        let mut tasks = Vec::with_capacity(TASKS);
        for task in 0..TASKS {
            // Batches of 1 to 3 events, so a winner moves the stream by different amounts.
            let events: Vec<NewEvent> = (0..1 + (task + round) % 3)
                .map(|i| ev("Raced", json!({"round": round, "task": task, "i": i})))
                .collect();
            let (store, s) = (store.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                let r = store
                    .append(s, ExpectedSeq::Exact(Seq(expected)), events.clone())
                    .await;
                (events, r)
            }));
        }
        let mut won = Vec::new();
        let mut lost = Vec::new();
        for t in tasks {
            let (events, r) = t.await.expect("an appending task panicked");
            match r {
                Ok(r) => won.push((events, r)),
                Err(e) => lost.push(conflict::<()>(Err(e))),
            }
        }
        assert_eq!(
            won.len(),
            1,
            "round {round}: {} appends succeeded",
            won.len()
        );
        assert_eq!(lost.len(), TASKS - 1);
        let (events, r) = won.pop().unwrap();
        assert!(!r.replayed);
        assert_eq!(r.first_seq, Seq(expected + 1), "round {round}");
        assert_eq!(
            r.last_seq,
            Seq(expected + events.len() as u64),
            "round {round}"
        );
        for c in &lost {
            assert_eq!(c.stream, s);
            assert_eq!(c.expected, ExpectedSeq::Exact(Seq(expected)));
            assert_eq!(
                c.current_seq, r.last_seq,
                "round {round}: a loser saw another seq"
            );
            assert_eq!(
                ids(&c.missed),
                new_ids(&events),
                "round {round}: missed != the winner's"
            );
            assert!(!c.missed_truncated);
        }
        expected = r.last_seq.0;
        winners.push(events);
    }

    let stored = read_stream(&*store, &s, 1).await;
    assert_eq!(
        seqs(&stored),
        (1..=expected).collect::<Vec<_>>(),
        "seqs are not gapless"
    );
    assert_eq!(seq_of(&*store, &s).await, expected);
    let all: Vec<NewEvent> = winners.concat();
    assert_stored(&stored, &s, 1, &all);
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for e in &whole_log(&*store).await {
        *seen.entry(e.event_id).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        all.len(),
        "the log holds other events than the winners'"
    );
    assert!(all.iter().all(|e| seen.get(&e.event_id) == Some(&1)));
});

store_test!(
    writers_to_different_streams_all_succeed,
    |store| async move {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let s = stream(&format!("own-{task}"));
                for i in 0..5u64 {
                    let r = store
                        .append(s.clone(), ExpectedSeq::Exact(Seq(i)), evs("Step", 1))
                        .await
                        .unwrap_or_else(|e| panic!("{s} at {i}: {e}"));
                    assert_eq!(r.last_seq, Seq(i + 1));
                }
                s
            }));
        }
        for t in tasks {
            let s = t.await.expect("an appending task panicked");
            assert_eq!(
                seqs(&read_stream(&*store, &s, 1).await),
                vec![1, 2, 3, 4, 5]
            );
        }
        let log = whole_log(&*store).await;
        assert_eq!(log.len(), TASKS * 5);
        let mut unique: Vec<_> = positions(&log);
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), log.len(), "two events share a position");
    }
);
