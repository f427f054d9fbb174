//! Whole events of the log after a cursor (`LogReader::read_events`, what `GET /v1/events`
//! serves): pages equal the global read, cursors grow along the log as pairs and as text,
//! filters, positions turned into cursors, and a consumer that keeps only its last cursor
//! skips and repeats nothing while writers commit and one transaction commits late.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ledger_core::{
    Envelope, EventFilter, ExpectedSeq, LogCursor, LogEvent, LogReader, Position, Seq, StoreError,
};
use ledger_tests::fixtures::*;

use crate::read_all::fill;
use serde_json::json;
use uuid::Uuid;

/// Every event passing `filter`, read `page` at a time from the start.
async fn read_paged(log: &dyn LogReader, filter: &EventFilter, page: usize) -> Vec<LogEvent> {
    let mut after = LogCursor::START;
    let mut out: Vec<LogEvent> = Vec::new();
    loop {
        let events = log.read_events(after, filter, page).await.unwrap();
        assert!(events.len() <= page, "a page longer than its limit");
        let short = events.len() < page;
        if let Some(last) = events.last() {
            after = last.cursor;
        }
        out.extend(events);
        if short {
            return out;
        }
    }
}

/// Panics unless the cursors grow strictly, as pairs and as text.
fn assert_cursors_grow(events: &[LogEvent]) {
    for pair in events.windows(2) {
        assert!(pair[0].cursor < pair[1].cursor, "{pair:?}");
        assert!(pair[0].cursor.to_string() < pair[1].cursor.to_string());
    }
}

store_test!(pages_are_the_global_log, |store| async move {
    let log = fill(&store).await;
    for page in [1, 4, 30, 100] {
        let read = read_paged(&*store, &EventFilter::all(), page).await;
        let envelopes: Vec<Envelope> = read.iter().map(|e| e.envelope.clone()).collect();
        assert_eq!(envelopes, log, "pages of {page}");
        assert_cursors_grow(&read);
        for e in &read {
            assert_eq!(e.cursor.position, e.envelope.position);
            assert_eq!(
                store.cursor_at(e.envelope.position).await.unwrap(),
                e.cursor
            );
            let rest = store
                .read_events(e.cursor, &EventFilter::all(), 100)
                .await
                .unwrap();
            let expected: Vec<&Envelope> = log
                .iter()
                .skip_while(|x| x.event_id != e.envelope.event_id)
                .skip(1)
                .collect();
            assert_eq!(
                rest.iter().map(|r| &r.envelope).collect::<Vec<_>>(),
                expected
            );
        }
    }
    let none = store
        .read_events(LogCursor::START, &EventFilter::all(), 0)
        .await
        .unwrap();
    assert!(none.is_empty());
});

store_test!(filters_are_anded_lists, |store| async move {
    let log = fill(&store).await;
    let cases = [
        EventFilter {
            categories: vec!["order".into()],
            ..EventFilter::all()
        },
        EventFilter {
            categories: vec!["order".into(), "invoice".into()],
            ..EventFilter::all()
        },
        EventFilter {
            types: vec!["Paid".into(), "PlacedX".into()],
            ..EventFilter::all()
        },
        EventFilter {
            categories: vec!["orderx".into()],
            types: vec!["Placed".into()],
            ..EventFilter::all()
        },
        EventFilter {
            streams: vec!["order-2".into(), "invoice-1".into()],
            ..EventFilter::all()
        },
        EventFilter {
            streams: vec!["order-2".into()],
            types: vec!["Paid".into()],
            categories: vec!["order".into()],
        },
        EventFilter {
            categories: vec!["ord".into(), "order-1".into()],
            ..EventFilter::all()
        },
        EventFilter {
            streams: vec!["nobody-1".into()],
            ..EventFilter::all()
        },
    ];
    for filter in cases {
        let want: Vec<&Envelope> = log
            .iter()
            .filter(|e| filter.matches(e.stream.as_str(), &e.event_type))
            .collect();
        for page in [1, 3, 50] {
            let read = read_paged(&*store, &filter, page).await;
            assert_eq!(
                read.iter().map(|e| &e.envelope).collect::<Vec<_>>(),
                want,
                "{filter:?} in pages of {page}"
            );
            assert_cursors_grow(&read);
        }
    }
});

store_test!(positions_become_cursors, |store| async move {
    let log = fill(&store).await;
    assert_eq!(
        store.cursor_at(Position::START).await.unwrap(),
        LogCursor::START
    );
    let beyond = Position(log.last().unwrap().position.0 + 1000);
    assert!(
        matches!(store.cursor_at(beyond).await, Err(StoreError::UnknownPosition(p)) if p == beyond.0)
    );
    // A cursor naming no event still reads exactly what lies after it in the log's order.
    let read = store
        .read_events(
            LogCursor::new(u64::MAX, Position(u64::MAX)),
            &EventFilter::all(),
            10,
        )
        .await
        .unwrap();
    assert!(read.is_empty());
});

/// Concurrent writers that commit while the late transaction holds.
const WRITERS: usize = 6;
/// Appends per writer.
const APPENDS: usize = 8;

store_test!(
    a_cursor_consumer_skips_and_repeats_nothing,
    |store| async move {
        let done = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicUsize::new(usize::MAX));
        let consumer = {
            let (store, done, total) = (store.clone(), done.clone(), total.clone());
            tokio::spawn(async move {
                let mut cursor = LogCursor::START;
                let mut seen: Vec<LogEvent> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let finishing = done.load(Ordering::SeqCst);
                    let page = store
                        .read_events(cursor, &EventFilter::all(), 7)
                        .await
                        .unwrap();
                    if let Some(last) = page.last() {
                        cursor = last.cursor;
                    }
                    seen.extend(page);
                    if finishing && seen.len() >= total.load(Ordering::SeqCst) {
                        let rest = store
                            .read_events(cursor, &EventFilter::all(), 100)
                            .await
                            .unwrap();
                        seen.extend(rest);
                        return seen;
                    }
                    if Instant::now() > deadline {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            })
        };

        let mut appended: Vec<Uuid> = Vec::new();
        let mut late = store.begin().await.unwrap();
        let held = evs("Late", 2);
        appended.extend(new_ids(&held));
        late.append(stream("late-1"), ExpectedSeq::NoStream, held)
            .await
            .unwrap();
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
                        .append(s.clone(), ExpectedSeq::Exact(Seq(i as u64)), vec![e])
                        .await
                        .unwrap();
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        late.commit().await.unwrap();
        for w in writers {
            w.await.expect("a writer panicked");
        }
        total.store(appended.len(), Ordering::SeqCst);
        done.store(true, Ordering::SeqCst);
        let seen = consumer.await.expect("the consumer panicked");

        assert_cursors_grow(&seen);
        let ids: Vec<Uuid> = seen.iter().map(|e| e.envelope.event_id).collect();
        let unique: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "the consumer saw an event twice");
        let want: HashSet<Uuid> = appended.iter().copied().collect();
        let missing: Vec<&Uuid> = want.difference(&unique).collect();
        assert!(missing.is_empty(), "the consumer skipped {missing:?}");
        assert_eq!(unique, want, "the consumer saw events nobody appended");
        // Per stream, in seq order.
        for w in 0..WRITERS {
            let name = format!("other-{w}");
            let seqs: Vec<u64> = seen
                .iter()
                .filter(|e| e.envelope.stream.as_str() == name)
                .map(|e| e.envelope.seq.0)
                .collect();
            assert_eq!(seqs, (1..=APPENDS as u64).collect::<Vec<_>>(), "{name}");
        }
    }
);
