//! Idempotent retries: the same events appended again return the original result with
//! `replayed: true` and write nothing, even with a stale expectation; an event id reused for
//! other content is `event_id_reused`.

use ledger_core::{AppendResult, ExpectedSeq, NewEvent, Seq, StoreError};
use ledger_tests::fixtures::*;
use serde_json::json;

use ExpectedSeq::{Any, Exact, NoStream};

/// `r` as a replay answers it.
fn replayed(r: &AppendResult) -> AppendResult {
    AppendResult {
        replayed: true,
        ..r.clone()
    }
}

store_test!(a_retry_returns_the_original_result, |store| async move {
    let s = stream("pay-1");
    let a = ev("PaymentVerified", json!({"checkout_session_id": "cs_1"}));
    let first = store
        .append(s.clone(), NoStream, vec![a.clone()])
        .await
        .unwrap();
    assert!(!first.replayed);

    // The same append again: the expectation is stale now, the answer is the original one.
    let again = store
        .append(s.clone(), NoStream, vec![a.clone()])
        .await
        .unwrap();
    assert_eq!(again, replayed(&first));
    // With other expectations too, and with other metadata (it is per request).
    for expected in [
        Exact(Seq(0)),
        Exact(Seq(1)),
        Exact(Seq(7)),
        Any,
        ExpectedSeq::Exists,
    ] {
        let r = store
            .append(s.clone(), expected, vec![a.clone()])
            .await
            .unwrap();
        assert_eq!(r, replayed(&first), "retry with {expected}");
    }
    let other_meta = a.clone().with_metadata(json!({"request_id": "retry-2"}));
    let r = store
        .append(s.clone(), NoStream, vec![other_meta])
        .await
        .unwrap();
    assert_eq!(r, replayed(&first));

    // A batch of three, retried after the stream moved on.
    let batch = evs("Provisioned", 3);
    let b = store
        .append(s.clone(), Exact(Seq(1)), batch.clone())
        .await
        .unwrap();
    assert_eq!((b.first_seq, b.last_seq), (Seq(2), Seq(4)));
    let later = store
        .append(s.clone(), Exact(Seq(4)), evs("Later", 2))
        .await
        .unwrap();
    assert_eq!(later.last_seq, Seq(6));
    let r = store
        .append(s.clone(), Exact(Seq(1)), batch.clone())
        .await
        .unwrap();
    assert_eq!(r, replayed(&b));
    let r = store.append(s.clone(), Any, batch.clone()).await.unwrap();
    assert_eq!(r, replayed(&b));
    // The first event alone is a retry of the first append.
    let r = store
        .append(s.clone(), NoStream, vec![a.clone()])
        .await
        .unwrap();
    assert_eq!(r, replayed(&first));

    // Nothing was written by any retry.
    let stored = read_stream(&*store, &s, 1).await;
    assert_eq!(stored.len(), 6);
    assert_eq!(seqs(&stored), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        stored[0].metadata,
        json!({}),
        "a retry does not rewrite the metadata"
    );
    assert_eq!(whole_log(&*store).await.len(), 6);
});

store_test!(a_reused_event_id_is_refused, |store| async move {
    let s = stream("pay-2");
    let a = ev("PaymentVerified", json!({"checkout_session_id": "cs_2"}));
    store
        .append(s.clone(), NoStream, vec![a.clone()])
        .await
        .unwrap();
    let log = whole_log(&*store).await;

    let assert_reused = |result: Result<AppendResult, StoreError>, what: &str| {
        let err = error(result);
        assert!(
            matches!(err, StoreError::EventIdReused { event_id } if event_id == a.event_id),
            "{what}: {err:?}"
        );
        assert_eq!(err.code(), "event_id_reused");
        assert!(err.is_bad_input());
    };

    // The same id with other data, another type, or in another stream.
    let other_data = NewEvent {
        data: json!({"checkout_session_id": "cs_other"}),
        ..a.clone()
    };
    assert_reused(
        store
            .append(s.clone(), Exact(Seq(1)), vec![other_data])
            .await,
        "other data",
    );
    let other_type = NewEvent {
        event_type: "PaymentRefunded".into(),
        ..a.clone()
    };
    assert_reused(
        store.append(s.clone(), Any, vec![other_type]).await,
        "other type",
    );
    let elsewhere = stream("pay-3");
    let r = store
        .append(elsewhere.clone(), NoStream, vec![a.clone()])
        .await;
    assert_reused(r, "other stream");
    let r = store.append(elsewhere.clone(), Any, vec![a.clone()]).await;
    assert_reused(r, "other stream, any");

    // A batch that reuses an id beside new events.
    let mixed = vec![ev("New", json!({})), a.clone()];
    assert_eq!(
        error(store.append(s.clone(), Any, mixed).await).code(),
        "event_id_reused"
    );
    let mixed = vec![a.clone(), ev("New", json!({}))];
    assert_eq!(
        error(store.append(s.clone(), Any, mixed).await).code(),
        "event_id_reused"
    );

    assert_eq!(
        whole_log(&*store).await,
        log,
        "a refused reuse wrote something"
    );
    assert_eq!(seq_of(&*store, &elsewhere).await, 0);
});

store_test!(
    a_retried_batch_in_another_order_is_refused,
    |store| async move {
        let s = stream("pay-4");
        let batch = evs("Step", 3);
        store
            .append(s.clone(), NoStream, batch.clone())
            .await
            .unwrap();
        let log = whole_log(&*store).await;
        let swapped = vec![batch[1].clone(), batch[0].clone(), batch[2].clone()];
        let err = error(store.append(s.clone(), Exact(Seq(3)), swapped).await);
        assert_eq!(err.code(), "event_id_reused", "{err:?}");
        // A tail of the batch retried alone is the same events at the same seqs: a replay.
        let tail = store
            .append(s.clone(), Exact(Seq(0)), batch[1..].to_vec())
            .await
            .unwrap();
        assert_eq!(
            (tail.first_seq, tail.last_seq, tail.replayed),
            (Seq(2), Seq(3), true)
        );
        assert_eq!(whole_log(&*store).await, log);
    }
);
