//! Raw-database baseline operations that `ledger bench` measures the store against.

use crate::{BoxFuture, NewEvent, Seq, StoreError, StreamName};

/// One row of a baseline insert: the same columns the store writes for an event.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// The stream name column.
    pub stream: StreamName,
    /// The seq column.
    pub seq: Seq,
    /// The event's id, type, data and metadata columns.
    pub event: NewEvent,
}

/// Plain SQL against the same database, with no ledger logic: the yardstick of `ledger bench`.
pub trait Baseline: Send + Sync {
    /// Creates the plain baseline table (same columns as the event log, no constraints
    /// beyond a primary key) or empties it.
    fn baseline_reset(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Inserts `rows` into the plain table with one plain INSERT statement.
    fn baseline_insert(&self, rows: Vec<BenchRow>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Fetches every row of the event log with one plain ordered SELECT, decoding the same
    /// columns into the same Rust types the store's reads produce; returns the row count.
    fn baseline_scan(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Number of events in the event log.
    fn log_len(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
}
