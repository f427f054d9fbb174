//! Expected seqs: each variant succeeding and failing, the append results, and the conflicts'
//! fields (stream, expected, current seq, the missed events and their truncation).

use ledger_core::{ExpectedSeq, Limits, Position, Seq, StoreOptions};
use ledger_tests::fixtures::*;
use serde_json::json;

use ExpectedSeq::{Any, Exact, Exists, NoStream};

store_test!(every_variant_succeeds_and_fails, |store| async move {
    let s = stream("acct-1");

    // NoStream on a new stream.
    let e1 = ev("Opened", json!({"owner": "ada"}));
    let r1 = store
        .append(s.clone(), NoStream, vec![e1.clone()])
        .await
        .unwrap();
    assert_eq!(
        (&r1.stream, r1.first_seq, r1.last_seq),
        (&s, Seq(1), Seq(1))
    );
    assert!(!r1.replayed);
    assert!(r1.position > Position::START);

    // NoStream on an existing stream: the conflict reports everything after seq 0.
    let c = conflict(
        store
            .append(s.clone(), NoStream, vec![ev("Opened", json!({}))])
            .await,
    );
    assert_eq!(
        (&c.stream, c.expected, c.current_seq),
        (&s, NoStream, Seq(1))
    );
    assert_eq!(c.missed, read_stream(&*store, &s, 1).await);
    assert_eq!(ids(&c.missed), vec![e1.event_id]);
    assert!(!c.missed_truncated);

    // Exists on an empty stream.
    let empty = stream("acct-empty");
    let c = conflict(
        store
            .append(empty.clone(), Exists, vec![ev("Deposited", json!({}))])
            .await,
    );
    assert_eq!(
        (&c.stream, c.expected, c.current_seq),
        (&empty, Exists, Seq(0))
    );
    assert!(c.missed.is_empty() && !c.missed_truncated);
    assert_eq!(seq_of(&*store, &empty).await, 0);

    // Exists on an existing stream.
    let e2 = ev("Deposited", json!({"amount": 10}));
    let r2 = store
        .append(s.clone(), Exists, vec![e2.clone()])
        .await
        .unwrap();
    assert_eq!((r2.first_seq, r2.last_seq), (Seq(2), Seq(2)));
    assert!(r2.position > r1.position);

    // Exact(n), right.
    let e3 = ev("Withdrawn", json!({"amount": 3}));
    let r3 = store
        .append(s.clone(), Exact(Seq(2)), vec![e3.clone()])
        .await
        .unwrap();
    assert_eq!((r3.first_seq, r3.last_seq), (Seq(3), Seq(3)));
    assert!(r3.position > r2.position);

    // Exact(n), behind: the missed events are those after n, oldest first, as stored.
    let c = conflict(
        store
            .append(s.clone(), Exact(Seq(1)), vec![ev("Withdrawn", json!({}))])
            .await,
    );
    assert_eq!(
        (&c.stream, c.expected, c.current_seq),
        (&s, Exact(Seq(1)), Seq(3))
    );
    assert_eq!(ids(&c.missed), vec![e2.event_id, e3.event_id]);
    assert_eq!(seqs(&c.missed), vec![2, 3]);
    assert_eq!(c.missed, read_stream(&*store, &s, 2).await);
    assert!(!c.missed_truncated);

    // Exact(n), ahead: nothing was missed.
    let c = conflict(
        store
            .append(s.clone(), Exact(Seq(5)), vec![ev("Withdrawn", json!({}))])
            .await,
    );
    assert_eq!(
        (&c.stream, c.expected, c.current_seq),
        (&s, Exact(Seq(5)), Seq(3))
    );
    assert!(c.missed.is_empty() && !c.missed_truncated);

    // Exact(0) on a new stream, and on an existing one.
    let t = stream("acct-2");
    let r = store
        .append(t.clone(), Exact(Seq(0)), vec![ev("Opened", json!({}))])
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (Seq(1), Seq(1)));
    assert!(r.position > r3.position);
    let c = conflict(
        store
            .append(t.clone(), Exact(Seq(0)), vec![ev("Opened", json!({}))])
            .await,
    );
    assert_eq!(
        (c.expected, c.current_seq, c.missed.len()),
        (Exact(Seq(0)), Seq(1), 1)
    );

    // Any, on a new stream and on an existing one.
    let u = stream("acct-3");
    let r = store
        .append(u.clone(), Any, vec![ev("Opened", json!({}))])
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (Seq(1), Seq(1)));
    let r = store
        .append(s.clone(), Any, evs("Deposited", 2))
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (Seq(4), Seq(5)));

    // The refused appends wrote nothing.
    assert_eq!(seq_of(&*store, &s).await, 5);
    assert_eq!(
        seqs(&read_stream(&*store, &s, 1).await),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(seq_of(&*store, &t).await, 1);
    assert_eq!(seq_of(&*store, &u).await, 1);
    assert_eq!(seq_of(&*store, &empty).await, 0);
    assert_eq!(whole_log(&*store).await.len(), 7);
});

store_test!(
    missed_events_are_truncated_at_the_default_limit,
    |store| async move {
        let max = Limits::default().max_missed_events as u64;
        let s = stream("busy-1");
        let events = evs("Ticked", max as usize + 8);
        store
            .append(s.clone(), NoStream, events.clone())
            .await
            .unwrap();
        let stored = read_stream(&*store, &s, 1).await;

        // More missed than the limit: the oldest `max` of them, flagged as truncated.
        let c = conflict(
            store
                .append(s.clone(), Exact(Seq(2)), evs("Ticked", 1))
                .await,
        );
        assert_eq!(c.current_seq, Seq(max + 8));
        assert_eq!(c.missed.len() as u64, max);
        assert!(c.missed_truncated);
        assert_eq!(c.missed, stored[2..2 + max as usize]);

        // Exactly the limit: all of them, not truncated.
        let c = conflict(
            store
                .append(s.clone(), Exact(Seq(8)), evs("Ticked", 1))
                .await,
        );
        assert_eq!(c.missed, stored[8..]);
        assert!(!c.missed_truncated);

        // One fewer than the limit.
        let c = conflict(
            store
                .append(s.clone(), Exact(Seq(9)), evs("Ticked", 1))
                .await,
        );
        assert_eq!(c.missed, stored[9..]);
        assert!(!c.missed_truncated);

        // NoStream on a long stream: the first `max` events.
        let c = conflict(store.append(s.clone(), NoStream, evs("Ticked", 1)).await);
        assert_eq!(c.missed, stored[..max as usize]);
        assert!(c.missed_truncated);
        assert_eq!(seq_of(&*store, &s).await, max + 8);
    }
);

store_test!(
    missed_events_follow_a_custom_limit,
    options = StoreOptions {
        limits: Limits {
            max_missed_events: 3,
            ..Limits::default()
        },
        ..ledger_tests::options()
    },
    |store| async move {
        let s = stream("busy-2");
        store
            .append(s.clone(), NoStream, evs("Ticked", 6))
            .await
            .unwrap();
        let stored = read_stream(&*store, &s, 1).await;
        let c = conflict(
            store
                .append(s.clone(), Exact(Seq(1)), evs("Ticked", 1))
                .await,
        );
        assert_eq!((c.current_seq, c.missed_truncated), (Seq(6), true));
        assert_eq!(c.missed, stored[1..4]);
        let c = conflict(
            store
                .append(s.clone(), Exact(Seq(3)), evs("Ticked", 1))
                .await,
        );
        assert_eq!(
            (c.missed.as_slice(), c.missed_truncated),
            (&stored[3..], false)
        );
    }
);

store_test!(conflicts_serialize_with_their_fields, |store| async move {
    let s = stream("acct-9");
    store
        .append(s.clone(), NoStream, evs("Opened", 1))
        .await
        .unwrap();
    let err = store
        .append(s.clone(), Exact(Seq(0)), evs("Opened", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    assert!(!err.is_bad_input());
    let text = err.to_string();
    assert!(
        text.contains("acct-9") && text.contains("stream is at 1"),
        "{text}"
    );
    let value = serde_json::to_value(err.as_conflict().unwrap()).unwrap();
    assert_eq!(value["stream"], "acct-9");
    assert_eq!(value["expected"], 0);
    assert_eq!(value["current_seq"], 1);
    assert_eq!(value["missed"][0]["seq"], 1);
    assert_eq!(value["missed_truncated"], false);
});
