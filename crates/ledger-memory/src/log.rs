//! The in-memory log, the append planning shared by plain and transactional appends, and the
//! paged reads of the projection engine ([`LogReader`]).

use std::collections::HashMap;

use ledger_core::chain::recorded_now;
use ledger_core::{
    AppendResult, BoxFuture, ChainHash, Conflict, Envelope, EventFilter, ExpectedSeq, Limits, Link,
    LogCursor, LogEvent, LogFilter, LogPage, LogReader, NewEvent, Position, RawEvent, Seq,
    StoreError, StreamName, match_replay, validate_batch,
};
use uuid::Uuid;

use crate::store::MemoryStore;

/// Every committed event, indexed by stream and by id.
#[derive(Default)]
pub(crate) struct Log {
    /// Events in position order.
    pub(crate) events: Vec<Envelope>,
    /// Indexes into `events` per stream, in seq order.
    pub(crate) streams: HashMap<StreamName, Vec<usize>>,
    /// Index into `events` per event id.
    pub(crate) ids: HashMap<Uuid, usize>,
    /// Each event's (previous hash, hash), in position order like `events`.
    pub(crate) links: Vec<(ChainHash, ChainHash)>,
}

impl Log {
    /// The stream's seq counting committed and `staged` events.
    fn seq(&self, staged: &[Envelope], stream: &StreamName) -> Seq {
        let staged_seq = staged
            .iter()
            .rev()
            .find(|e| &e.stream == stream)
            .map(|e| e.seq);
        staged_seq.unwrap_or_else(|| Seq(self.streams.get(stream).map_or(0, |v| v.len() as u64)))
    }

    /// The stream's committed and staged events with `seq > after`.
    fn after<'a>(
        &'a self,
        staged: &'a [Envelope],
        stream: &'a StreamName,
        after: Seq,
    ) -> impl Iterator<Item = &'a Envelope> + 'a {
        let committed = self
            .streams
            .get(stream)
            .into_iter()
            .flatten()
            .map(|&i| &self.events[i]);
        committed
            .chain(staged.iter().filter(move |e| &e.stream == stream))
            .filter(move |e| e.seq > after)
    }

    /// The next position to assign, counting `staged` events.
    fn next_position(&self, staged: &[Envelope]) -> u64 {
        let last = staged.last().or(self.events.last());
        last.map_or(1, |e| e.position.0 + 1)
    }

    /// Plans one append on top of the committed log and `staged`: the envelopes to add, or
    /// the original result of a replay (nothing to add), or the error.
    pub(crate) fn plan(
        &self,
        staged: &[Envelope],
        stream: &StreamName,
        expected: ExpectedSeq,
        events: &[NewEvent],
        limits: &Limits,
    ) -> Result<Planned, StoreError> {
        validate_batch(events, limits)?;
        let existing: Vec<Envelope> = events
            .iter()
            .filter_map(|e| {
                let committed = self.ids.get(&e.event_id).map(|&i| &self.events[i]);
                committed.or_else(|| staged.iter().find(|s| s.event_id == e.event_id))
            })
            .cloned()
            .collect();
        if let Some(replay) = match_replay(stream, events, &existing) {
            return replay.map(Planned::Replayed);
        }
        let current = self.seq(staged, stream);
        if !expected.admits(current) {
            let after = expected.missed_after();
            let missed = self
                .after(staged, stream, after)
                .take(limits.max_missed_events + 1)
                .cloned()
                .collect();
            return Err(Conflict::error(
                stream,
                expected,
                current,
                missed,
                limits.max_missed_events,
            ));
        }
        let first_position = self.next_position(staged);
        let now = recorded_now();
        let envelopes = events
            .iter()
            .enumerate()
            .map(|(i, e)| Envelope {
                event_id: e.event_id,
                stream: stream.clone(),
                seq: current.plus(i as u64 + 1),
                position: Position(first_position + i as u64),
                event_type: e.event_type.clone(),
                data: e.data.clone(),
                metadata: e.metadata.clone(),
                recorded_at: now,
            })
            .collect();
        Ok(Planned::Write(envelopes))
    }

    /// The index of the first event after `after` (positions follow commit order).
    fn first_after(&self, after: Position) -> usize {
        self.events.partition_point(|e| e.position <= after)
    }

    /// The committed events after `after` that pass `filter`, in position order.
    fn after_position<'a>(
        &'a self,
        after: Position,
        filter: &'a LogFilter,
    ) -> impl Iterator<Item = &'a Envelope> + 'a {
        self.events[self.first_after(after)..]
            .iter()
            .filter(move |e| filter.matches(e.stream.as_str()))
    }

    /// Adds an imported event with its stored links.
    pub(crate) fn load(&mut self, e: Envelope, links: (ChainHash, ChainHash)) {
        let index = self.events.len();
        self.streams
            .entry(e.stream.clone())
            .or_default()
            .push(index);
        self.ids.insert(e.event_id, index);
        self.links.push(links);
        self.events.push(e);
    }

    /// Adds planned envelopes to the committed log.
    pub(crate) fn commit(&mut self, envelopes: Vec<Envelope>) {
        for e in envelopes {
            let index = self.events.len();
            let indexes = self.streams.entry(e.stream.clone()).or_default();
            let prev = indexes
                .last()
                .map_or(ChainHash::GENESIS, |&i| self.links[i].1);
            self.links.push((prev, Link::of(&e).hash(&prev)));
            indexes.push(index);
            self.ids.insert(e.event_id, index);
            self.events.push(e);
        }
    }
}

/// Commits are serial (one writer lock), so positions follow commit order: the horizon is
/// always `u64::MAX` and positions compare as numbers.
impl LogReader for MemoryStore {
    fn read_page<'a>(
        &'a self,
        after: Position,
        filter: &'a LogFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        let events = log
            .after_position(after, filter)
            .take(limit)
            .map(RawEvent::of)
            .collect();
        drop(log);
        Box::pin(async move {
            Ok(LogPage {
                events,
                horizon: u64::MAX,
            })
        })
    }

    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }

    fn covers<'a>(
        &'a self,
        checkpoint: Position,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        let exists = log
            .events
            .binary_search_by_key(&position, |e| e.position)
            .is_ok();
        let covered = exists
            && !log
                .after_position(checkpoint, filter)
                .take_while(|e| e.position <= position)
                .any(|_| true);
        drop(log);
        Box::pin(async move { Ok(covered) })
    }

    fn count_after<'a>(
        &'a self,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        let n = log.after_position(position, filter).count() as u64;
        drop(log);
        Box::pin(async move { Ok(n) })
    }

    fn last_position(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        let last = log.events.last().map_or(Position::START, |e| e.position);
        drop(log);
        Box::pin(async move { Ok(last) })
    }

    fn read_events<'a>(
        &'a self,
        after: LogCursor,
        filter: &'a EventFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LogEvent>, StoreError>> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        let start = log.first_after(after.position);
        let events = log.events[start..]
            .iter()
            .filter(|e| filter.matches(e.stream.as_str(), &e.event_type))
            .take(limit)
            .map(|e| LogEvent {
                cursor: LogCursor::new(0, e.position),
                envelope: e.clone(),
            })
            .collect();
        drop(log);
        Box::pin(async move { Ok(events) })
    }

    fn events_at<'a>(
        &'a self,
        positions: &'a [Position],
    ) -> BoxFuture<'a, Result<Vec<Envelope>, StoreError>> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        let events = positions
            .iter()
            .filter_map(|p| {
                log.events
                    .binary_search_by_key(p, |e| e.position)
                    .ok()
                    .map(|i| log.events[i].clone())
            })
            .collect();
        drop(log);
        Box::pin(async move { Ok(events) })
    }

    fn cursor_at(&self, position: Position) -> BoxFuture<'_, Result<LogCursor, StoreError>> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        let known = position == Position::START
            || log
                .events
                .binary_search_by_key(&position, |e| e.position)
                .is_ok();
        drop(log);
        Box::pin(async move {
            if known {
                Ok(LogCursor::new(0, position))
            } else {
                Err(StoreError::UnknownPosition(position.0))
            }
        })
    }
}

/// The outcome of planning an append.
pub(crate) enum Planned {
    /// New envelopes to write.
    Write(Vec<Envelope>),
    /// An idempotent retry: the original result, nothing to write.
    Replayed(AppendResult),
}

impl Planned {
    /// The append result these envelopes (or this replay) answer with.
    pub(crate) fn result(&self, stream: &StreamName) -> AppendResult {
        match self {
            Planned::Replayed(r) => r.clone(),
            Planned::Write(envs) => {
                let (first, last) = (&envs[0], &envs[envs.len() - 1]);
                AppendResult {
                    stream: stream.clone(),
                    first_seq: first.seq,
                    last_seq: last.seq,
                    position: last.position,
                    replayed: false,
                }
            }
        }
    }

    /// The envelopes to write (none for a replay).
    pub(crate) fn into_envelopes(self) -> Vec<Envelope> {
        match self {
            Planned::Write(envs) => envs,
            Planned::Replayed(_) => Vec::new(),
        }
    }
}
