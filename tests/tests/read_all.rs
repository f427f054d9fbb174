//! The global log: read after a position, filtered by category and by type, across pages;
//! unknown positions; envelopes carry their metadata and recording time.

use chrono::{Duration, Utc};
use ledger_core::{Envelope, ExpectedSeq, Position, ReadAll, StoreError};
use ledger_tests::fixtures::*;
use serde_json::json;

/// Appends the log the read cases query: several categories (one a prefix of another) and types.
pub(crate) async fn fill(store: &ledger_tests::Store) -> Vec<Envelope> {
    let streams = ["order-1", "order-2", "invoice-1", "orderx-1", "order_x-1"].map(stream);
    let types = ["Placed", "Paid", "PlacedX"];
    for i in 0..40usize {
        let s = &streams[i % streams.len()];
        let t = types[i % types.len()];
        store
            .append(s.clone(), ExpectedSeq::Any, vec![ev(t, json!({ "i": i }))])
            .await
            .unwrap();
    }
    whole_log(&**store).await
}

store_test!(reads_the_whole_log_in_order, |store| async move {
    let log = fill(&store).await;
    assert_eq!(log.len(), 40);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(
            e.data,
            json!({ "i": i }),
            "sequential appends are read in append order"
        );
    }
    assert_increasing(&positions(&log));
    // Every envelope is the one its stream holds.
    for e in &log {
        let in_stream = read_stream(&*store, &e.stream, e.seq.0).await;
        assert_eq!(&in_stream[0], e);
    }
});

store_test!(reads_after_a_position, |store| async move {
    let log = fill(&store).await;
    for k in 0..log.len() {
        let after = read_all(&*store, ReadAll::after(log[k].position)).await;
        assert_eq!(after, log[k + 1..], "after event {k}");
    }
    assert_eq!(
        read_all(&*store, ReadAll::after(Position::START)).await,
        log
    );
});

store_test!(filters_by_category_and_type, |store| async move {
    let log = fill(&store).await;
    let pick = |f: &dyn Fn(&Envelope) -> bool| -> Vec<Envelope> {
        log.iter().filter(|e| f(e)).cloned().collect()
    };

    let orders = read_all(&*store, ReadAll::from_start().category("order")).await;
    assert_eq!(orders, pick(&|e| e.stream.category() == "order"));
    assert_eq!(orders.len(), 16);
    let placed = read_all(&*store, ReadAll::from_start().event_type("Placed")).await;
    assert_eq!(placed, pick(&|e| e.event_type == "Placed"));
    assert_eq!(placed.len(), 14);
    let both = read_all(
        &*store,
        ReadAll::from_start().category("order").event_type("Paid"),
    )
    .await;
    assert_eq!(
        both,
        pick(&|e| e.stream.category() == "order" && e.event_type == "Paid")
    );
    assert!(!both.is_empty());

    // After a position, also one of an event the filter leaves out.
    for k in [0, 1, 6, 7, 13, 20, 39] {
        let p = log[k].position;
        let got = read_all(&*store, ReadAll::after(p).category("invoice")).await;
        let want: Vec<_> = log[k + 1..]
            .iter()
            .filter(|e| e.stream.category() == "invoice")
            .cloned()
            .collect();
        assert_eq!(got, want, "invoices after event {k}");
    }

    // Nothing matches: no events, no error.
    assert!(
        read_all(&*store, ReadAll::from_start().category("nothing"))
            .await
            .is_empty()
    );
    assert!(
        read_all(&*store, ReadAll::from_start().event_type("Nothing"))
            .await
            .is_empty()
    );
    assert!(
        read_all(&*store, ReadAll::from_start().category("orde"))
            .await
            .is_empty()
    );
});

store_test!(an_unknown_position_is_refused, |store| async move {
    // An empty log reads as empty from the start.
    assert!(whole_log(&*store).await.is_empty());
    let log = fill(&store).await;
    let beyond = log.iter().map(|e| e.position.0).max().unwrap() + 1000;
    let err = try_read_all(&*store, ReadAll::after(Position(beyond)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownPosition(p) if p == beyond),
        "{err:?}"
    );
    assert_eq!(err.code(), "unknown_position");
    let err = try_read_all(&*store, ReadAll::after(Position(beyond)).category("order"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownPosition(p) if p == beyond),
        "{err:?}"
    );
});

store_test!(
    envelopes_carry_metadata_and_recorded_at,
    |store| async move {
        let s = stream("tenant-0190c3a1-7b2e");
        let metadata = json!({
            "actor": "user:ada",
            "correlation_id": "c-1",
            "causation_id": null,
            "request_id": "r-1",
            "free": {"nested": [1, 2.5, "drei", true]}
        });
        let data =
            json!({"name": "Acme GmbH", "emoji": "🚀", "big": 9007199254740991u64, "neg": -3});
        let e = ev("TenantRegistered", data.clone()).with_metadata(metadata.clone());
        let before = Utc::now();
        store
            .append(
                s.clone(),
                ExpectedSeq::NoStream,
                vec![e.clone(), ev("Plain", json!(null))],
            )
            .await
            .unwrap();
        let after = Utc::now();
        let log = whole_log(&*store).await;
        assert_eq!(log.len(), 2);
        let got = &log[0];
        assert_eq!((got.event_id, &got.event_type), (e.event_id, &e.event_type));
        assert_eq!((&got.data, &got.metadata), (&data, &metadata));
        assert_eq!(
            log[1].metadata,
            json!({}),
            "default metadata is an empty object"
        );
        assert_eq!(log[1].data, json!(null));
        // A sanity check of the clock, with a wide margin: it is not a timing assertion.
        let margin = Duration::seconds(60);
        for e in &log {
            assert!(
                e.recorded_at >= before - margin && e.recorded_at <= after + margin,
                "recorded_at {} is not around {before}..{after}",
                e.recorded_at
            );
        }
        assert_eq!(read_stream(&*store, &s, 1).await, log);
    }
);

store_test!(
    category_filters_match_the_category_literally,
    |store| async move {
        // Categories that a pattern match (LIKE wildcards, prefixes) would confuse.
        let names = [
            "order-1",
            "order_x-1",
            "orderzx-1",
            "order--x",
            "orders-1",
            "o-1",
        ];
        for n in names {
            store
                .append(
                    stream(n),
                    ExpectedSeq::NoStream,
                    vec![ev("E", json!({ "s": n }))],
                )
                .await
                .unwrap();
        }
        let log = whole_log(&*store).await;
        let streams_of = |events: Vec<Envelope>| -> Vec<String> {
            events.into_iter().map(|e| e.stream.to_string()).collect()
        };
        for (category, want) in [
            ("order", vec!["order-1", "order--x"]),
            ("order_x", vec!["order_x-1"]),
            ("orderzx", vec!["orderzx-1"]),
            ("o", vec!["o-1"]),
            ("order-", vec![]),
            ("order%", vec![]),
            ("order_", vec![]),
            ("", vec![]),
            ("ORDER", vec![]),
        ] {
            let got = read_all(&*store, ReadAll::from_start().category(category)).await;
            assert_eq!(streams_of(got.clone()), want, "category {category:?}");
            for e in &got {
                assert!(log.contains(e));
            }
        }
        // Types match exactly too.
        assert!(
            read_all(&*store, ReadAll::from_start().event_type("e"))
                .await
                .is_empty()
        );
        assert!(
            read_all(&*store, ReadAll::from_start().event_type("%"))
                .await
                .is_empty()
        );
        assert_eq!(
            read_all(&*store, ReadAll::from_start().event_type("E")).await,
            log
        );
    }
);
