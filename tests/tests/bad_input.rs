//! Refused input: each limit gives its own error with its fields, and writes nothing.

use ledger_core::{ExpectedSeq, Limits, StoreError, StoreOptions, StreamName};
use ledger_tests::fixtures::*;
use serde_json::{Value, json};

use ExpectedSeq::{Any, NoStream};

/// Serialized length of a JSON value, as the limit counts it.
fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).unwrap().len()
}

store_test!(
    each_limit_has_its_code_and_writes_nothing,
    |store| async move {
        let s = stream("input-1");
        store
            .append(s.clone(), NoStream, evs("Ok", 1))
            .await
            .unwrap();
        let log = whole_log(&*store).await;

        // An empty batch.
        let err = error(store.append(s.clone(), Any, vec![]).await);
        assert!(matches!(err, StoreError::EmptyBatch), "{err:?}");
        assert_eq!(err.code(), "empty_batch");
        assert!(err.is_bad_input());

        // Over 1 MiB of data and metadata, at its index in the batch.
        let limit = Limits::default().max_event_bytes;
        let big = ev("Big", json!("x".repeat(limit)));
        let size = json_len(&big.data) + json_len(&big.metadata);
        let err = error(
            store
                .append(s.clone(), Any, vec![ev("Small", json!({})), big])
                .await,
        );
        assert!(
            matches!(err, StoreError::EventTooLarge { index: 1, size: got, limit: l } if got == size && l == limit),
            "{err:?}"
        );
        assert_eq!(err.code(), "event_too_large");
        // Data and metadata count together: each under the limit, together over it.
        let half = ev("Half", json!("y".repeat(limit / 2)))
            .with_metadata(json!({"pad": "z".repeat(limit / 2)}));
        let err = error(store.append(s.clone(), Any, vec![half]).await);
        assert!(
            matches!(err, StoreError::EventTooLarge { index: 0, .. }),
            "{err:?}"
        );

        // Metadata that is not a JSON object.
        for (i, metadata) in [json!([1, 2]), json!("actor"), json!(null), json!(7)]
            .into_iter()
            .enumerate()
        {
            let mut batch = evs("Meta", i + 1);
            batch[i].metadata = metadata.clone();
            let err = error(store.append(s.clone(), Any, batch).await);
            assert!(
                matches!(err, StoreError::InvalidMetadata { index } if index == i),
                "{metadata}: {err:?}"
            );
            assert_eq!(err.code(), "invalid_metadata");
        }

        // Malformed events: an empty type, a control character in the type, an id twice.
        let mut no_type = ev("X", json!({}));
        no_type.event_type.clear();
        let mut control = ev("X", json!({}));
        control.event_type = "Bad\nType".into();
        let twice = ev("Twice", json!({}));
        for (what, batch) in [
            ("empty type", vec![no_type]),
            ("control character", vec![control]),
            ("type too long", vec![ev(&"T".repeat(201), json!({}))]),
            ("same id twice", vec![twice.clone(), twice]),
        ] {
            let err = error(store.append(s.clone(), Any, batch).await);
            assert!(
                matches!(err, StoreError::InvalidInput(_)),
                "{what}: {err:?}"
            );
            assert_eq!(err.code(), "invalid_input");
        }

        assert_eq!(
            whole_log(&*store).await,
            log,
            "refused input wrote something"
        );
        assert_eq!(seq_of(&*store, &s).await, 1);
    }
);

store_test!(
    custom_limits_are_enforced,
    options = StoreOptions {
        limits: Limits {
            max_event_bytes: 100,
            max_batch_events: 5,
            max_missed_events: 32,
        },
        ..ledger_tests::options()
    },
    |store| async move {
        let s = stream("input-2");
        // Exactly the limit is accepted: data and metadata of 100 bytes together.
        let data = json!("a".repeat(100 - 2 - 2));
        let fits = ev("Fits", data);
        assert_eq!(json_len(&fits.data) + json_len(&fits.metadata), 100);
        store.append(s.clone(), NoStream, vec![fits]).await.unwrap();
        let log = whole_log(&*store).await;

        let over = ev("Over", json!("a".repeat(100 - 2 - 2 + 1)));
        let err = error(store.append(s.clone(), Any, vec![over]).await);
        assert!(
            matches!(
                err,
                StoreError::EventTooLarge {
                    index: 0,
                    size: 101,
                    limit: 100
                }
            ),
            "{err:?}"
        );
        let meta = ev("Meta", json!(1)).with_metadata(json!({"actor": "m".repeat(100)}));
        let err = error(store.append(s.clone(), Any, vec![meta]).await);
        assert!(
            matches!(
                err,
                StoreError::EventTooLarge {
                    index: 0,
                    limit: 100,
                    ..
                }
            ),
            "{err:?}"
        );

        // More events than one append may carry.
        let err = error(store.append(s.clone(), Any, evs("Many", 6)).await);
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
        store.append(s.clone(), Any, evs("Five", 5)).await.unwrap();
        assert_eq!(whole_log(&*store).await.len(), log.len() + 5);
    }
);

store_test!(invalid_stream_names_are_refused, |store| async move {
    let long = format!("tenant-{}", "x".repeat(201));
    for bad in [
        "",
        "tenant",
        "-abc",
        "Tenant-abc",
        "1tenant-abc",
        "ten ant-abc",
        "tenant-",
        "tenant-a b",
        "tenant-a/b",
        "tenant-é",
        "tenant-a\u{0}",
        long.as_str(),
    ] {
        let err = StreamName::parse(bad).unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidStreamName { name, .. } if name == bad),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.code(), "invalid_stream_name");
        assert!(err.is_bad_input());
        // Names arriving as JSON are validated too.
        assert!(
            serde_json::from_value::<StreamName>(json!(bad)).is_err(),
            "{bad:?}"
        );
    }
    // The longest valid id, and names that look odd but are valid, work end to end.
    let longest = stream(&format!("tenant-{}", "x".repeat(200)));
    for s in [
        longest,
        stream("a-b"),
        stream("session-a.b:c_d-E"),
        stream("bench_2-1-2-3"),
    ] {
        let r = store
            .append(s.clone(), NoStream, evs("Named", 1))
            .await
            .unwrap();
        assert_eq!(read_stream(&*store, &s, 1).await[0].stream, r.stream);
    }
    assert_eq!(whole_log(&*store).await.len(), 4);
});
