//! A log reader that counts the reads of whole events it passes on: what `ledger bench live`
//! and the tests use to show what live subscribers cost the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{
    BoxFuture, Envelope, EventFilter, LogCursor, LogEvent, LogFilter, LogPage, LogReader, Position,
    StoreError,
};

/// `inner`, counting each [`LogReader::read_events`] call.
pub struct CountedLog {
    inner: Arc<dyn LogReader>,
    reads: AtomicU64,
}

impl CountedLog {
    /// Counts the reads of `inner`.
    pub fn new(inner: Arc<dyn LogReader>) -> Self {
        Self {
            inner,
            reads: AtomicU64::new(0),
        }
    }

    /// Reads of whole events so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl LogReader for CountedLog {
    fn read_page<'a>(
        &'a self,
        after: Position,
        filter: &'a LogFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>> {
        self.inner.read_page(after, filter, limit)
    }

    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.log_mark()
    }

    fn covers<'a>(
        &'a self,
        checkpoint: Position,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.covers(checkpoint, position, filter)
    }

    fn count_after<'a>(
        &'a self,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.count_after(position, filter)
    }

    fn last_position(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        self.inner.last_position()
    }

    fn read_events<'a>(
        &'a self,
        after: LogCursor,
        filter: &'a EventFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LogEvent>, StoreError>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_events(after, filter, limit)
    }

    fn cursor_at(&self, position: Position) -> BoxFuture<'_, Result<LogCursor, StoreError>> {
        self.inner.cursor_at(position)
    }

    fn events_at<'a>(
        &'a self,
        positions: &'a [Position],
    ) -> BoxFuture<'a, Result<Vec<Envelope>, StoreError>> {
        self.inner.events_at(positions)
    }
}
