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

/// A plain indexed lookup of events through a table that indexes them by `position` (a read
/// model's, e.g. the audit trail): the yardstick of `ledger bench audit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineLookup {
    /// The index table (a lowercase SQL identifier) with a `position` column.
    pub table: &'static str,
    /// Only rows whose text column equals the value (`None`: every row).
    pub equal: Option<(&'static str, String)>,
    /// The integer column rows are ordered by (then `position`).
    pub order_by: &'static str,
    /// Only rows with `order_by` at or above this.
    pub from: Option<i64>,
    /// Only rows with `order_by` below this.
    pub to: Option<i64>,
    /// Newest first.
    pub descending: bool,
    /// At most this many events.
    pub limit: usize,
}

impl BaselineLookup {
    /// Whether every name in it is a lowercase SQL identifier (the backends refuse others).
    pub fn is_well_named(&self) -> bool {
        let ident = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                && !s.as_bytes()[0].is_ascii_digit()
        };
        ident(self.table)
            && ident(self.order_by)
            && self.equal.as_ref().is_none_or(|(c, _)| ident(c))
    }
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

    /// Streams the log's events with their links in (stream, seq) order with one plain
    /// SELECT, decoding but neither checking nor hashing them; returns the count (what a chain
    /// walk is measured against).
    fn baseline_chain_scan(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Number of events in the event log.
    fn log_len(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Runs `lookup` as one plain SELECT joining the index table with the events, decoding
    /// every column of each event; returns how many events it fetched.
    fn baseline_lookup<'a>(
        &'a self,
        lookup: &'a BaselineLookup,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
}
