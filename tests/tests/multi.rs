//! Multi-stream appends: every stream's expectation holds and all commit, or nothing is written.

use ledger_core::{AppendResult, ExpectedSeq, Seq, StoreError, StreamAppend};
use ledger_tests::fixtures::*;
use serde_json::json;

use ExpectedSeq::{Exact, NoStream};

store_test!(both_streams_commit_together, |store| async move {
    let tenant = stream("tenant-t1");
    let slug = stream("slug-acme");
    let registered = vec![
        ev("TenantRegistered", json!({"slug": "acme", "name": "Acme"})),
        ev("PaymentVerified", json!({})),
    ];
    let claimed = vec![ev("SlugClaimed", json!({"tenant_id": "t1"}))];
    let results = store
        .append_multi(vec![
            StreamAppend::new(tenant.clone(), NoStream, registered.clone()),
            StreamAppend::new(slug.clone(), NoStream, claimed.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        (
            &results[0].stream,
            results[0].first_seq,
            results[0].last_seq
        ),
        (&tenant, Seq(1), Seq(2))
    );
    assert_eq!(
        (
            &results[1].stream,
            results[1].first_seq,
            results[1].last_seq
        ),
        (&slug, Seq(1), Seq(1))
    );
    assert!(!results[0].replayed && !results[1].replayed);
    assert_ne!(results[0].position, results[1].position);
    let t = read_stream(&*store, &tenant, 1).await;
    let c = read_stream(&*store, &slug, 1).await;
    assert_stored(&t, &tenant, 1, &registered);
    assert_stored(&c, &slug, 1, &claimed);
    assert_eq!(results[0].position, t[1].position);
    assert_eq!(results[1].position, c[0].position);
    assert_eq!(whole_log(&*store).await.len(), 3);

    // A single-stream multi-append is a plain append.
    let r = store
        .append_multi(vec![StreamAppend::new(
            tenant.clone(),
            Exact(Seq(2)),
            evs("More", 1),
        )])
        .await
        .unwrap();
    assert_eq!((r[0].first_seq, r[0].last_seq), (Seq(3), Seq(3)));
});

store_test!(one_failing_expectation_writes_nothing, |store| async move {
    let slug = stream("slug-taken");
    let first = stream("tenant-first");
    let claimed = evs("SlugClaimed", 1);
    store
        .append_multi(vec![
            StreamAppend::new(first.clone(), NoStream, evs("TenantRegistered", 1)),
            StreamAppend::new(slug.clone(), NoStream, claimed.clone()),
        ])
        .await
        .unwrap();
    let log = whole_log(&*store).await;

    // The second tenant loses the slug: nothing of its registration is written.
    let second = stream("tenant-second");
    let err = store
        .append_multi(vec![
            StreamAppend::new(second.clone(), NoStream, evs("TenantRegistered", 2)),
            StreamAppend::new(slug.clone(), NoStream, evs("SlugClaimed", 1)),
        ])
        .await;
    let c = conflict(err);
    assert_eq!(
        (&c.stream, c.expected, c.current_seq),
        (&slug, NoStream, Seq(1))
    );
    assert_eq!(ids(&c.missed), new_ids(&claimed));
    assert!(read_stream(&*store, &second, 1).await.is_empty());
    assert_eq!(seq_of(&*store, &second).await, 0);

    // The same with the failing stream first, and with both expectations failing.
    let err = store
        .append_multi(vec![
            StreamAppend::new(slug.clone(), Exact(Seq(0)), evs("SlugClaimed", 1)),
            StreamAppend::new(second.clone(), NoStream, evs("TenantRegistered", 1)),
        ])
        .await;
    let c = conflict(err);
    assert_eq!(
        (&c.stream, c.expected, c.current_seq),
        (&slug, Exact(Seq(0)), Seq(1))
    );
    let err = store
        .append_multi(vec![
            StreamAppend::new(second.clone(), Exact(Seq(3)), evs("TenantRegistered", 1)),
            StreamAppend::new(first.clone(), Exact(Seq(5)), evs("More", 1)),
        ])
        .await;
    let c = conflict(err);
    assert!(
        (c.stream == second && c.current_seq == Seq(0))
            || (c.stream == first && c.current_seq == Seq(1)),
        "the conflict is neither stream's: {c:?}"
    );

    // A bad event in the second stream refuses the first stream's events too.
    let mut bad = evs("SlugClaimed", 2);
    bad[1].metadata = json!("not an object");
    let err = error(
        store
            .append_multi(vec![
                StreamAppend::new(second.clone(), NoStream, evs("TenantRegistered", 1)),
                StreamAppend::new(stream("slug-other"), NoStream, bad),
            ])
            .await,
    );
    assert!(
        matches!(err, StoreError::InvalidMetadata { index: 1 }),
        "{err:?}"
    );

    // One stream twice, or no stream at all, is refused.
    let err = error(
        store
            .append_multi(vec![
                StreamAppend::new(second.clone(), NoStream, evs("A", 1)),
                StreamAppend::new(second.clone(), ExpectedSeq::Any, evs("B", 1)),
            ])
            .await,
    );
    assert_eq!(err.code(), "invalid_input", "{err:?}");
    assert_eq!(
        error(store.append_multi(vec![]).await).code(),
        "empty_batch"
    );

    assert_eq!(
        whole_log(&*store).await,
        log,
        "a refused multi-append wrote something"
    );
});

store_test!(
    a_retried_multi_append_returns_the_originals,
    |store| async move {
        let tenant = stream("tenant-t2");
        let slug = stream("slug-beta");
        let appends = vec![
            StreamAppend::new(tenant.clone(), NoStream, evs("TenantRegistered", 2)),
            StreamAppend::new(slug.clone(), NoStream, evs("SlugClaimed", 1)),
        ];
        let originals = store.append_multi(appends.clone()).await.unwrap();
        // Other events land on the tenant stream in between.
        store
            .append(tenant.clone(), Exact(Seq(2)), evs("PaymentVerified", 1))
            .await
            .unwrap();
        let log = whole_log(&*store).await;

        let again = store.append_multi(appends.clone()).await.unwrap();
        let want: Vec<AppendResult> = originals
            .iter()
            .map(|r| AppendResult {
                replayed: true,
                ..r.clone()
            })
            .collect();
        assert_eq!(again, want);
        assert_eq!(
            whole_log(&*store).await,
            log,
            "a replayed multi-append wrote something"
        );
    }
);
