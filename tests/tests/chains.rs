//! Hash chains: every kind of append chains its events, the links survive the database's JSON
//! and time types, a stale head cache corrects itself, tampering by a superuser is named by
//! stream and seq, a migration fills in missing chains, and an export loads identically.

use futures::TryStreamExt;
use ledger_core::chain::{ChainScope, ChainedEvent, Link};
use ledger_core::verify::{Break, ChainWalker, check_pin};
use ledger_core::{ChainHash, EventStore, ExpectedSeq, Position, Seq, StreamAppend, StreamName};
use ledger_tests::Store;
use ledger_tests::backend::{Db, Kind};
use ledger_tests::fixtures::*;
use serde_json::json;

use ExpectedSeq::{Any, Exact, Exists, NoStream};

/// Every event in `scope` with its links, in (stream, seq) order.
async fn chained(store: &Store, scope: ChainScope) -> Vec<ChainedEvent> {
    store
        .chains(scope)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading the chains failed: {e}"))
}

/// Walks every chain: the breaks found.
async fn walk(store: &Store) -> Vec<Break> {
    let mut walker = ChainWalker::new(true);
    let mut breaks = Vec::new();
    for e in chained(store, ChainScope::default()).await {
        breaks.extend(walker.push(e));
    }
    breaks.extend(walker.finish());
    breaks
}

/// The (stream, seq, fault code) of each break.
fn named(breaks: &[Break]) -> Vec<(String, u64, &'static str)> {
    breaks
        .iter()
        .map(|b| (b.stream.clone(), b.seq.0, b.fault.code()))
        .collect()
}

/// Checks that each event's stored hash is its recomputed link after the one before.
fn assert_linked(events: &[ChainedEvent]) {
    let mut prev: Option<(&StreamName, ChainHash)> = None;
    for e in events {
        let before = match prev {
            Some((s, h)) if s == &e.envelope.stream => h,
            _ => ChainHash::GENESIS,
        };
        assert_eq!(
            e.prev_hash,
            Some(before),
            "{} seq {}",
            e.envelope.stream,
            e.envelope.seq
        );
        let hash = Link::of(&e.envelope).hash(&before);
        assert_eq!(
            e.hash,
            Some(hash),
            "{} seq {}",
            e.envelope.stream,
            e.envelope.seq
        );
        prev = Some((&e.envelope.stream, hash));
    }
}

store_test!(every_kind_of_append_is_chained, |store| async move {
    let a = stream("chain-a");
    let b = stream("chain-b");
    store
        .append(a.clone(), NoStream, evs("One", 1))
        .await
        .unwrap();
    store
        .append(a.clone(), Exact(Seq(1)), evs("Three", 3))
        .await
        .unwrap();
    store.append(a.clone(), Any, evs("Any", 1)).await.unwrap();
    store
        .append(a.clone(), Exists, evs("Exists", 2))
        .await
        .unwrap();
    // Longer than one insert statement carries on SQLite.
    store
        .append(b.clone(), NoStream, evs("Long", 620))
        .await
        .unwrap();
    let replayed = evs("Replayed", 2);
    store
        .append(a.clone(), Exact(Seq(7)), replayed.clone())
        .await
        .unwrap();
    let again = store
        .append(a.clone(), Exact(Seq(3)), replayed)
        .await
        .unwrap();
    assert!(again.replayed);
    store
        .append_multi(vec![
            StreamAppend::new(a.clone(), Exact(Seq(9)), evs("Multi", 2)),
            StreamAppend::new(stream("chain-c"), NoStream, evs("Multi", 1)),
        ])
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.append(a.clone(), Exact(Seq(11)), evs("InTx", 1))
        .await
        .unwrap();
    tx.append(a.clone(), Exact(Seq(12)), evs("InTx", 2))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // After the transaction, an append that the head cache does not know of.
    store
        .append(a.clone(), Exact(Seq(14)), evs("After", 1))
        .await
        .unwrap();

    let events = chained(&store, ChainScope::default()).await;
    assert_eq!(events.len(), 15 + 620 + 1);
    assert_linked(&events);
    assert_eq!(walk(&store).await, []);

    // The head is the last event's seq and hash.
    let head = store.stream_head(a.clone()).await.unwrap().unwrap();
    let last = events.iter().rfind(|e| e.envelope.stream == a).unwrap();
    assert_eq!((head.seq, Some(head.hash)), (Seq(15), last.hash));
    assert_eq!(head.position, last.envelope.position);
    assert_eq!(store.stream_head(stream("chain-none")).await.unwrap(), None);
    let at = store.chained_at(a.clone(), Seq(4)).await.unwrap().unwrap();
    assert_eq!(at.envelope.seq, Seq(4));
    assert_eq!(at, events[3]);
    assert_eq!(store.chained_at(a.clone(), Seq(16)).await.unwrap(), None);

    // One stream, and a walk from a position.
    let only_c = chained(
        &store,
        ChainScope {
            stream: Some(stream("chain-c")),
            after: Position::START,
        },
    )
    .await;
    assert_eq!(only_c.len(), 1);
    let from = events[5].envelope.position;
    let later = chained(
        &store,
        ChainScope {
            stream: None,
            after: from,
        },
    )
    .await;
    assert!(later.iter().all(|e| e.envelope.position > from));
    assert_eq!(
        later.len(),
        events.iter().filter(|e| e.envelope.position > from).count()
    );
});

store_test!(
    json_numbers_strings_and_times_keep_their_hash,
    |store| async move {
        let s = stream("chain-json");
        let data = json!({
            "z": 1, "a": [1e16, 100.0, 0.1, 1e-7, 1e300, -0.0, 1e21, 2.5e-324],
            "big": 18446744073709551615u64, "small": i64::MIN,
            "text": "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓ 😀 \u{7f}",
            "nested": {"b": {"d": null, "c": true}, "a": false, "": "empty key", "é": 1, "E": 2},
        });
        let metadata = json!({"actor": {"token": "t", "role": "admin"}, "n": 1.5});
        let event = ev("Tricky", data).with_metadata(metadata);
        store
            .append(s.clone(), NoStream, vec![event])
            .await
            .unwrap();
        store
            .append(s.clone(), Exact(Seq(1)), evs("Next", 1))
            .await
            .unwrap();
        let events = chained(&store, ChainScope::default()).await;
        assert_linked(&events);
        assert_eq!(walk(&store).await, []);
        // Times are kept to the microsecond, as they are hashed.
        assert!(
            events
                .iter()
                .all(|e| e.envelope.recorded_at.timestamp_subsec_nanos() % 1000 == 0)
        );
    }
);

store_test!(databases: a_stale_head_cache_corrects_itself, |db| async move {
    db.migrate().await.unwrap();
    let one = db.open(ledger_tests::options()).await.unwrap();
    let two = db.open(ledger_tests::options()).await.unwrap();
    let s = stream("chain-shared");
    one.append(s.clone(), NoStream, evs("One", 1)).await.unwrap();
    // Each store caches the head it wrote; the other one's appends make it stale.
    for round in 0..5u64 {
        let seq = 1 + round * 4;
        two.append(s.clone(), Exact(Seq(seq)), evs("Two", 1)).await.unwrap();
        one.append(s.clone(), Any, evs("One", 1)).await.unwrap();
        two.append(s.clone(), Exists, evs("Two", 1)).await.unwrap();
        one.append(s.clone(), Exact(Seq(seq + 3)), evs("One", 1)).await.unwrap();
    }
    // A stale expectation is still a conflict that reports the current seq.
    let c = conflict(one.append(s.clone(), Exact(Seq(3)), evs("Late", 1)).await);
    assert_eq!(c.current_seq, Seq(21));
    let events = chained(&one, ChainScope::default()).await;
    assert_eq!(events.len(), 21);
    assert_linked(&events);
    assert_eq!(walk(&two).await, []);
});

/// A store on `db` holding streams `t-1`..`t-4` of five events each.
async fn four_streams(db: &Db) -> Store {
    db.migrate().await.unwrap();
    let store = db.open(ledger_tests::options()).await.unwrap();
    for t in 1..=4 {
        let data: Vec<_> = (1..=5)
            .map(|n| {
                ev(
                    "Step",
                    json!({"name": format!("tenant {t} step {n}"), "n": n}),
                )
            })
            .collect();
        store
            .append(stream(&format!("t-{t}")), NoStream, data)
            .await
            .unwrap();
    }
    assert_eq!(walk(&store).await, []);
    store
}

store_test!(databases: tampering_is_named_by_stream_and_seq, |db| async move {
    let store = four_streams(&db).await;
    let (data_text, swap_a, swap_b, time) = match db.kind {
        Kind::Postgres => (
            "UPDATE events SET data = jsonb_set(data, '{name}', '\"tenant 1 step 3!\"') \
             WHERE stream = 't-1' AND seq = 3",
            "UPDATE events SET data = (SELECT data FROM events WHERE stream = 't-3' AND seq = 4) \
             WHERE stream = 't-3' AND seq = 2",
            "UPDATE events SET data = '{\"name\": \"tenant 3 step 2\", \"n\": 2}' \
             WHERE stream = 't-3' AND seq = 4",
            "UPDATE events SET recorded_at = recorded_at + interval '1 microsecond' \
             WHERE stream = 't-4' AND seq = 5",
        ),
        Kind::Sqlite => (
            "UPDATE events SET data = replace(data, 'step 3', 'step 3!') \
             WHERE stream = 't-1' AND seq = 3",
            "UPDATE events SET data = (SELECT data FROM events WHERE stream = 't-3' AND seq = 4) \
             WHERE stream = 't-3' AND seq = 2",
            "UPDATE events SET data = '{\"n\":2,\"name\":\"tenant 3 step 2\"}' \
             WHERE stream = 't-3' AND seq = 4",
            "UPDATE events SET recorded_at = '1999' || substr(recorded_at, 5) \
             WHERE stream = 't-4' AND seq = 5",
        ),
    };
    // One changed byte of a payload.
    db.tamper(data_text).await;
    assert_eq!(named(&walk(&store).await), [("t-1".into(), 3, "payload_changed")]);
    // A deleted event.
    db.tamper("DELETE FROM events WHERE stream = 't-2' AND seq = 2").await;
    assert_eq!(
        named(&walk(&store).await),
        [("t-1".into(), 3, "payload_changed"), ("t-2".into(), 2, "event_missing")]
    );
    // Two events' payloads swapped.
    db.tamper(swap_a).await;
    db.tamper(swap_b).await;
    let breaks = walk(&store).await;
    assert_eq!(
        named(&breaks)[2..],
        [("t-3".into(), 2, "events_swapped"), ("t-3".into(), 4, "events_swapped")]
    );
    // A changed recording time.
    db.tamper(time).await;
    assert_eq!(named(&walk(&store).await)[4..], [("t-4".into(), 5, "payload_changed")]);
    // Every break says where, in words.
    let text = walk(&store).await.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(text[1], "t-2 seq 2: event missing: seq 2 is absent");
});

store_test!(databases: a_pinned_head_holds_while_the_stream_is_extended, |db| async move {
    let store = four_streams(&db).await;
    let s = stream("t-1");
    let pin = store.stream_head(s.clone()).await.unwrap().unwrap();
    store.append(s.clone(), Exact(Seq(5)), evs("More", 2)).await.unwrap();
    let at = store.chained_at(s.clone(), pin.seq).await.unwrap();
    assert_eq!(check_pin(&pin, at.as_ref(), Seq(7)), None);

    // The last event rewritten and rehashed consistently: the chain is whole, the pin fails.
    let head = store.stream_head(s.clone()).await.unwrap().unwrap();
    let last = store.chained_at(s.clone(), head.seq).await.unwrap().unwrap();
    let pin_last = head.clone();
    let mut forged = last.envelope.clone();
    forged.data = json!({"forged": true});
    let hash = Link::of(&forged).hash(&last.prev_hash.unwrap());
    let hex = hash.to_string();
    let sql = match db.kind {
        Kind::Postgres => format!(
            "UPDATE events SET data = '{{\"forged\": true}}', hash = decode('{hex}', 'hex') \
             WHERE stream = 't-1' AND seq = 7"
        ),
        Kind::Sqlite => format!(
            "UPDATE events SET data = '{{\"forged\":true}}', hash = X'{hex}' \
             WHERE stream = 't-1' AND seq = 7"
        ),
    };
    db.tamper(&sql).await;
    assert_eq!(walk(&store).await, [], "rewritten consistently, the chain alone passes");
    let at = store.chained_at(s.clone(), pin_last.seq).await.unwrap();
    let broken = check_pin(&pin_last, at.as_ref(), Seq(7)).unwrap();
    assert_eq!((broken.seq, broken.fault.code()), (Seq(7), "pinned_head_rewritten"));
    // The older pin still holds: the rewrite is after it.
    let at = store.chained_at(s.clone(), pin.seq).await.unwrap();
    assert_eq!(check_pin(&pin, at.as_ref(), Seq(7)), None);
});

store_test!(databases: a_migration_fills_in_missing_chains, |db| async move {
    let store = four_streams(&db).await;
    store.append(stream("t-1"), Exact(Seq(5)), evs("More", 3)).await.unwrap();
    let before = chained(&store, ChainScope::default()).await;
    // As the log was before the chains existed.
    db.tamper("UPDATE events SET prev_hash = NULL, hash = NULL").await;
    let unchained = chained(&store, ChainScope::default()).await;
    assert!(unchained.iter().all(|e| e.hash.is_none()));
    assert_eq!(walk(&store).await.len(), before.len(), "every event is unchained");
    db.migrate().await.unwrap();
    let after = chained(&store, ChainScope::default()).await;
    assert_eq!(after, before, "the filled chains are the ones the appends computed");
    // Once filled, links cannot be changed again.
    let err = db
        .execute("UPDATE events SET hash = prev_hash WHERE seq = 2")
        .await
        .expect_err("a filled link was changed");
    assert!(err.contains("append-only"), "{err}");
});

store_test!(
    an_export_loads_into_an_empty_store_as_it_was,
    |store| async move {
        let a = stream("export-a");
        store
            .append(a.clone(), NoStream, evs("One", 3))
            .await
            .unwrap();
        store
            .append(stream("export-b"), NoStream, evs("Two", 250))
            .await
            .unwrap();
        store
            .append(a.clone(), Exact(Seq(3)), evs("Three", 2))
            .await
            .unwrap();
        let exported: Vec<ChainedEvent> = store
            .chained_log(Position::START)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(exported.len(), 255);
        assert!(
            exported
                .windows(2)
                .all(|w| w[0].envelope.position < w[1].envelope.position)
        );
        let since: Vec<ChainedEvent> = store
            .chained_log(exported[9].envelope.position)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(since[..], exported[10..]);

        // Into the same store: refused, it is not empty, and nothing changed.
        let err = error(
            store
                .import(Box::pin(futures::stream::iter(
                    exported.clone().into_iter().map(Ok),
                )))
                .await,
        );
        assert_eq!(err.code(), "invalid_input", "{err}");
        assert_eq!(whole_log(&*store).await.len(), 255);
    }
);
