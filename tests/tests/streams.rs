//! One stream: atomic batches with consecutive seqs, `read_stream` from a seq (inclusive)
//! across page boundaries, and `stream_seq`.

use ledger_core::{ExpectedSeq, Seq, StoreError, StoreOptions};
use ledger_tests::fixtures::*;
use serde_json::json;

use ExpectedSeq::{Exact, NoStream};

store_test!(a_batch_gets_consecutive_seqs, |store| async move {
    let s = stream("order-1");
    assert_eq!(seq_of(&*store, &s).await, 0);
    let first = evs("LineAdded", 20);
    let r = store
        .append(s.clone(), NoStream, first.clone())
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (Seq(1), Seq(20)));
    let stored = read_stream(&*store, &s, 1).await;
    assert_stored(&stored, &s, 1, &first);
    assert_increasing(&positions(&stored));
    assert_eq!(
        r.position, stored[19].position,
        "the result carries the last event's position"
    );

    let second = evs("LineRemoved", 3);
    let r = store
        .append(s.clone(), Exact(Seq(20)), second.clone())
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (Seq(21), Seq(23)));
    let stored = read_stream(&*store, &s, 21).await;
    assert_stored(&stored, &s, 21, &second);
    assert_eq!(r.position, stored[2].position);
    assert!(stored[0].position > read_stream(&*store, &s, 20).await[0].position);
    assert_eq!(seq_of(&*store, &s).await, 23);
});

store_test!(a_failing_batch_writes_nothing, |store| async move {
    let s = stream("order-2");
    store
        .append(s.clone(), NoStream, evs("Placed", 2))
        .await
        .unwrap();
    let before = whole_log(&*store).await;

    // A conflict refuses the whole batch.
    let c = conflict(
        store
            .append(s.clone(), Exact(Seq(1)), evs("LineAdded", 5))
            .await,
    );
    assert_eq!(c.current_seq, Seq(2));

    // So does one bad event at the end of the batch.
    let mut batch = evs("LineAdded", 3);
    batch[2].metadata = json!(["not", "an", "object"]);
    let err = error(store.append(s.clone(), Exact(Seq(2)), batch).await);
    assert!(
        matches!(err, StoreError::InvalidMetadata { index: 2 }),
        "{err:?}"
    );

    assert_eq!(whole_log(&*store).await, before);
    assert_eq!(seq_of(&*store, &s).await, 2);
    // The stream goes on from where it was.
    let r = store
        .append(s.clone(), Exact(Seq(2)), evs("LineAdded", 1))
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (Seq(3), Seq(3)));
});

store_test!(read_stream_from_a_seq_across_pages, |store| async move {
    // Three streams appended in turns, so each one's events are spread over the log.
    let names = ["cart-a", "cart-b", "cartx-a"].map(stream);
    let mut appended = vec![Vec::new(), Vec::new(), Vec::new()];
    for round in 0..25u64 {
        for (i, s) in names.iter().enumerate() {
            // Batches of 1 and 2 events, so pages and batches do not line up.
            let batch = evs("Item", 1 + (round as usize + i) % 2);
            let seq = appended[i].len() as u64;
            store
                .append(s.clone(), Exact(Seq(seq)), batch.clone())
                .await
                .unwrap();
            appended[i].extend(batch);
        }
    }
    for (s, events) in names.iter().zip(&appended) {
        let n = events.len() as u64;
        assert_eq!(seq_of(&*store, s).await, n);
        let all = read_stream(&*store, s, 1).await;
        assert_stored(&all, s, 1, events);
        assert_increasing(&positions(&all));
        assert_eq!(
            read_stream(&*store, s, 0).await,
            all,
            "from 0 reads from the start"
        );
        // From every seq, inclusive, including page boundaries (page size 7) and the end.
        for from in 1..=n + 1 {
            let part = read_stream(&*store, s, from).await;
            assert_eq!(part, all[from as usize - 1..], "{s} from {from}");
        }
        assert!(read_stream(&*store, s, n + 100).await.is_empty());
    }
    assert!(
        read_stream(&*store, &stream("cart-none"), 1)
            .await
            .is_empty()
    );
    assert_eq!(seq_of(&*store, &stream("cart-none")).await, 0);
});

store_test!(
    read_stream_with_a_page_of_one,
    options = StoreOptions {
        read_page_size: 1,
        ..ledger_tests::options()
    },
    |store| async move {
        let s = stream("tiny-1");
        let events = evs("E", 5);
        store
            .append(s.clone(), NoStream, events.clone())
            .await
            .unwrap();
        assert_stored(&read_stream(&*store, &s, 1).await, &s, 1, &events);
        assert_stored(&read_stream(&*store, &s, 5).await, &s, 5, &events[4..]);
        assert_eq!(whole_log(&*store).await.len(), 5);
    }
);

store_test!(
    reads_with_the_default_page_size,
    options = StoreOptions {
        settle_timeout: ledger_tests::SETTLE_TIMEOUT,
        ..StoreOptions::default()
    },
    |store| async move {
        let s = stream("big-1");
        let events = evs("E", 2500);
        store
            .append(s.clone(), NoStream, events.clone())
            .await
            .unwrap();
        assert_stored(&read_stream(&*store, &s, 1).await, &s, 1, &events);
        assert_stored(
            &read_stream(&*store, &s, 1001).await,
            &s,
            1001,
            &events[1000..],
        );
        assert_eq!(ids(&whole_log(&*store).await), new_ids(&events));
    }
);
