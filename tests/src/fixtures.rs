//! Small builders and readers the cases share.

use std::fmt::Debug;

use futures::TryStreamExt;
use ledger_core::{
    Conflict, Envelope, EventStore, NewEvent, Position, ReadAll, Seq, StoreError, StreamName,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// A stream name the test knows is valid.
pub fn stream(name: &str) -> StreamName {
    StreamName::parse(name).unwrap_or_else(|e| panic!("test stream name {name:?}: {e}"))
}

/// One event of type `event_type` with `data` and a fresh id.
pub fn ev(event_type: &str, data: Value) -> NewEvent {
    NewEvent::new(event_type, data)
}

/// `n` events of type `event_type`, numbered in their data (`{"n": 1}`, `{"n": 2}`, ...).
pub fn evs(event_type: &str, n: usize) -> Vec<NewEvent> {
    (1..=n).map(|i| ev(event_type, json!({ "n": i }))).collect()
}

/// Every event of `stream` with `seq >= from`; panics on a read error.
pub async fn read_stream(
    store: &(impl EventStore + ?Sized),
    s: &StreamName,
    from: u64,
) -> Vec<Envelope> {
    store
        .read_stream(s.clone(), Seq(from))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("read_stream({s}, {from}) failed: {e}"))
}

/// The global log as `query` reads it, or the read's error.
pub async fn try_read_all(
    store: &(impl EventStore + ?Sized),
    query: ReadAll,
) -> Result<Vec<Envelope>, StoreError> {
    store.read_all(query).try_collect().await
}

/// The global log as `query` reads it; panics on a read error.
pub async fn read_all(store: &(impl EventStore + ?Sized), query: ReadAll) -> Vec<Envelope> {
    try_read_all(store, query.clone())
        .await
        .unwrap_or_else(|e| panic!("read_all({query:?}) failed: {e}"))
}

/// The whole global log.
pub async fn whole_log(store: &(impl EventStore + ?Sized)) -> Vec<Envelope> {
    read_all(store, ReadAll::from_start()).await
}

/// The stream's seq; panics on an error.
pub async fn seq_of(store: &(impl EventStore + ?Sized), s: &StreamName) -> u64 {
    store
        .stream_seq(s.clone())
        .await
        .unwrap_or_else(|e| panic!("stream_seq({s}) failed: {e}"))
        .0
}

/// The conflict `result` must be; panics with what it was otherwise.
pub fn conflict<T: Debug>(result: Result<T, StoreError>) -> Conflict {
    match result {
        Err(StoreError::Conflict(c)) => *c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The error `result` must be; panics with the success otherwise.
pub fn error<T: Debug>(result: Result<T, StoreError>) -> StoreError {
    match result {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// The ids of `envelopes`, in order.
pub fn ids(envelopes: &[Envelope]) -> Vec<Uuid> {
    envelopes.iter().map(|e| e.event_id).collect()
}

/// The ids of `events`, in order.
pub fn new_ids(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// The seqs of `envelopes`, in order.
pub fn seqs(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.seq.0).collect()
}

/// The positions of `envelopes`, in order.
pub fn positions(envelopes: &[Envelope]) -> Vec<Position> {
    envelopes.iter().map(|e| e.position).collect()
}

/// Asserts that stored envelopes hold exactly the appended events (ids, types, data, metadata,
/// stream) at consecutive seqs starting at `first_seq`.
pub fn assert_stored(stored: &[Envelope], s: &StreamName, first_seq: u64, events: &[NewEvent]) {
    assert_eq!(
        stored.len(),
        events.len(),
        "stored {} events of {s}, appended {}",
        stored.len(),
        events.len()
    );
    for (i, (got, want)) in stored.iter().zip(events).enumerate() {
        assert_eq!(got.event_id, want.event_id, "event {i} of {s}");
        assert_eq!(&got.stream, s, "event {i}");
        assert_eq!(got.seq, Seq(first_seq + i as u64), "event {i} of {s}");
        assert_eq!(got.event_type, want.event_type, "event {i} of {s}");
        assert_eq!(got.data, want.data, "event {i} of {s}");
        assert_eq!(got.metadata, want.metadata, "event {i} of {s}");
    }
}

/// Asserts that `positions` strictly increase.
pub fn assert_increasing(positions: &[Position]) {
    for w in positions.windows(2) {
        assert!(w[0] < w[1], "positions do not increase: {positions:?}");
    }
}
