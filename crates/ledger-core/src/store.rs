//! The store traits every backend implements.

use std::time::Duration;

use futures::stream::BoxStream;

use crate::{
    AppendResult, BoxFuture, Envelope, ExpectedSeq, GroupLimits, Limits, NewEvent, Position, Seq,
    StoreError, StreamAppend, StreamName,
};

/// A stream of envelopes read page by page from the store, with bounded memory.
pub type EventStream = BoxStream<'static, Result<Envelope, StoreError>>;

/// A read of the global log: every event after `after`, optionally filtered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadAll {
    /// Resume after this event's position (`Position::START` reads from the beginning).
    pub after: Position,
    /// Only streams of this category (the part of the name before the first `-`).
    pub category: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
}

impl ReadAll {
    /// The whole log from the beginning.
    pub fn from_start() -> Self {
        Self::default()
    }

    /// The log after `position`.
    pub fn after(position: Position) -> Self {
        Self {
            after: position,
            ..Self::default()
        }
    }

    /// Only events of streams in `category`.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Only events of type `event_type`.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }
}

/// Settings shared by every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Input limits.
    pub limits: Limits,
    /// Events fetched per page by the read streams.
    pub read_page_size: usize,
    /// Largest connection pool (readers; SQLite always has a single writer connection).
    pub max_connections: u32,
    /// How long a global read waits for transactions that were in flight when it started
    /// before it ends (PostgreSQL); the reader resumes later without a gap.
    pub settle_timeout: Duration,
    /// How long an operation waits for a database connection (a free one, or a new one to
    /// open) before it fails as unavailable (PostgreSQL).
    pub acquire_timeout: Duration,
    /// How many streams' heads (last seq and hash) a store remembers, so that an append to a
    /// recently written stream chains its events without reading the head first.
    pub head_cache: usize,
    /// How concurrent appends of this process are grouped into one transaction
    /// (`max_appends: 1` writes each alone; SQLite always uses one lane).
    pub group: GroupLimits,
}

impl StoreOptions {
    /// The default [`acquire_timeout`](Self::acquire_timeout).
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            read_page_size: 1000,
            max_connections: 16,
            settle_timeout: Duration::from_secs(5),
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            head_cache: 65_536,
            group: GroupLimits::default(),
        }
    }
}

/// An event store: atomic appends checked against an expected seq, and paged reads.
///
/// Every backend passes the same conformance suite (the `ledger-tests` package).
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` atomically if the stream is where `expected` says.
    ///
    /// A retry of an append that already happened (same event ids, stream, order and
    /// content) returns the original result with `replayed: true` and writes nothing.
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>>;

    /// Appends to several streams atomically: every expectation holds and all commit, or none.
    ///
    /// Results come back in the order of `appends`.
    fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>>;

    /// The stream's current seq (0 when it has no events).
    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>>;

    /// The events of one stream with `seq >= from`, in seq order.
    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream;

    /// The global log after `query.after`, in commit-safe order, never skipping an event
    /// that commits late. Ends when it has caught up with what was committed when it started.
    fn read_all(&self, query: ReadAll) -> EventStream;

    /// Why writes fail right now, for an operator (e.g. `disk full`), or `None` when nothing
    /// is known to be wrong. A backend that sees its writes fail may check with a write that
    /// changes nothing; the default knows of no fault.
    fn write_fault(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
}

/// A store whose appends can be staged in a transaction that commits later.
pub trait TransactionalStore: EventStore {
    /// Opens a write transaction. Other writers may wait until it ends.
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn AppendTx>, StoreError>>;
}

/// An open write transaction; after any error it must be rolled back.
pub trait AppendTx: Send {
    /// Stages an append; it becomes visible to readers only at commit.
    fn append(
        &mut self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>>;

    /// Commits every staged append.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Discards every staged append.
    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

macro_rules! forward_event_store {
    ($ptr:path) => {
        impl<T: EventStore + ?Sized> EventStore for $ptr {
            fn append(
                &self,
                stream: StreamName,
                expected: ExpectedSeq,
                events: Vec<NewEvent>,
            ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
                (**self).append(stream, expected, events)
            }

            fn append_multi(
                &self,
                appends: Vec<StreamAppend>,
            ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
                (**self).append_multi(appends)
            }

            fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
                (**self).stream_seq(stream)
            }

            fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
                (**self).read_stream(stream, from)
            }

            fn read_all(&self, query: ReadAll) -> EventStream {
                (**self).read_all(query)
            }

            fn write_fault(&self) -> BoxFuture<'_, Option<String>> {
                (**self).write_fault()
            }
        }
    };
}

forward_event_store!(std::sync::Arc<T>);
forward_event_store!(Box<T>);
