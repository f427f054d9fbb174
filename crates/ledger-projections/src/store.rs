//! What a backend provides to keep projections: their tables, checkpoints, leases and queries.
//!
//! The backends (`ledger-postgres`, `ledger-sqlite`, and [`crate::MemoryProjections`]) implement
//! [`ProjectionStore`]; the runner, rebuilds and the HTTP queries use only this trait, so no SQL
//! leaves the backend crates and no backend error type leaves them either.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, Position, StoreError};
use ledger_domain::{Phase, SyncStatus};
use serde::Serialize;

use crate::batch::{Batch, Decoded};
use crate::rows::{RowKey, Rows};
use crate::{Kind, Slot};

/// Where one copy of a projection stands: a row of the checkpoint table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The projection.
    pub kind: Kind,
    /// Which copy.
    pub slot: Slot,
    /// The projection version its tables were built with.
    pub version: u32,
    /// Changes every time the copy is created or swapped, so a writer that loaded an older
    /// generation can never commit into a newer one.
    pub generation: i64,
    /// The position of the last event applied (`Position::START`: none yet).
    pub position: Position,
    /// How many events of the log were applied (including events of other streams).
    pub events: u64,
    /// Who applied the last batch (a runner id).
    pub owner: Option<String>,
    /// When the checkpoint last moved (wall clock; not part of any row).
    pub updated_at: DateTime<Utc>,
}

impl Checkpoint {
    /// Where an applier expects this copy to be.
    pub fn target(&self) -> Target {
        Target {
            kind: self.kind,
            slot: self.slot,
            generation: self.generation,
            position: self.position,
            events: self.events,
        }
    }
}

/// A copy of a projection an applier writes to, and where it expects its checkpoint to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The projection.
    pub kind: Kind,
    /// Which copy.
    pub slot: Slot,
    /// The generation the applier loaded.
    pub generation: i64,
    /// The checkpoint the applier loaded or last wrote.
    pub position: Position,
    /// The events applied so far.
    pub events: u64,
}

/// A row filter of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every row.
    All,
    /// `tenant_phase` rows in this phase.
    Phase(Phase),
    /// `onboarding_locks` rows active at this time (not released, expiring later).
    ActiveAt(DateTime<Utc>),
    /// `pending_syncs` rows with this status.
    Status(SyncStatus),
}

/// A page of rows of one copy of a projection, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The projection.
    pub kind: Kind,
    /// Which copy.
    pub slot: Slot,
    /// Only this tenant's rows.
    pub tenant: Option<String>,
    /// Which rows.
    pub filter: Filter,
    /// Only rows after this key.
    pub after: Option<RowKey>,
    /// At most this many rows.
    pub limit: usize,
}

impl Query {
    /// Every row of one copy after `after`, at most `limit`.
    pub fn page(kind: Kind, slot: Slot, after: Option<RowKey>, limit: usize) -> Self {
        Self {
            kind,
            slot,
            tenant: None,
            filter: Filter::All,
            after,
            limit,
        }
    }
}

/// The exclusive right to apply one projection, held until dropped (or lost).
pub trait Lease: Send {
    /// Whether the lease still holds (PostgreSQL: its session is still there).
    fn alive(&mut self) -> BoxFuture<'_, bool>;
}

/// A page of the log read for the projections.
#[derive(Clone, Debug, PartialEq)]
pub struct LogPage {
    /// The events, in read order.
    pub events: Vec<Decoded>,
    /// Every transaction below this id had ended when the page was read (`u64::MAX` where
    /// commits are serial): compare with [`ProjectionStore::log_mark`].
    pub horizon: u64,
}

/// A consistent view of a projection's live copy: its checkpoint and rows as of one moment,
/// while appliers keep writing.
pub trait Snapshot: Send {
    /// The live checkpoint in this view (`None`: the projection was never created).
    fn checkpoint(&self) -> Option<Checkpoint>;

    /// Live rows in key order after `after`, at most `limit`, in this view.
    fn rows(
        &mut self,
        after: Option<RowKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Rows, StoreError>>;
}

/// Whether a swap happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swapped {
    /// The rebuilt copy is live now.
    Yes,
    /// The rebuild copy's checkpoint is not where the caller expected: someone else wrote it.
    Moved,
}

/// The tables, checkpoints, leases and queries of the projections on one database.
pub trait ProjectionStore: Send + Sync {
    /// Up to `limit` events of the log after `after`, in the log's read order, decoded for the
    /// projections (only `tenant-*` payloads are read). Like `EventStore::read_all` it never
    /// skips an event that commits later: on PostgreSQL it reads only transactions older than
    /// every running one. It does not wait for transactions in flight; fewer than `limit`
    /// events means "nothing more for now", and the page's horizon tells how far that holds.
    fn read_log(&self, after: Position, limit: usize)
    -> BoxFuture<'_, Result<LogPage, StoreError>>;

    /// The log's end as of now: once a page's [`LogPage::horizon`] reaches this mark, every
    /// transaction that was running when the mark was taken has ended (PostgreSQL: the next
    /// transaction id; 0 where commits are serial).
    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Every checkpoint row (live and rebuild copies).
    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>>;

    /// The checkpoint of one copy, `None` when it does not exist.
    fn checkpoint(
        &self,
        kind: Kind,
        slot: Slot,
    ) -> BoxFuture<'_, Result<Option<Checkpoint>, StoreError>>;

    /// (Re)creates one copy empty, at `Position::START`, with `kind.version()` and a new
    /// generation: its table is dropped if it exists and created from its definition (the
    /// live copy with its indexes, a rebuild copy without: they are built when it goes live).
    fn create(&self, kind: Kind, slot: Slot) -> BoxFuture<'_, Result<Checkpoint, StoreError>>;

    /// Drops a projection's rebuild copy and its checkpoint, if any.
    fn drop_rebuild(&self, kind: Kind) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Applies `batch` to one copy in one transaction: its checkpoint moves from
    /// `target.position` to the batch's last position (and `owner` is recorded) only if it is
    /// still at `target.generation` and `target.position`; then the rows the batch touches are
    /// loaded, folded ([`crate::fold`]) and written back. Returns false, writing nothing, when
    /// the checkpoint had moved.
    fn apply<'a>(
        &'a self,
        target: &'a Target,
        batch: &'a Batch,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Builds the secondary indexes of a filled rebuild copy ahead of its swap, outside the swap's
    /// transaction, where the backend can rename indexes (PostgreSQL); elsewhere the swap builds
    /// them. Idempotent; events applied afterwards keep the indexes up to date.
    fn build_indexes<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Atomically replaces the live copy of `rebuilt.kind` with its rebuild copy (which must
    /// still be at `rebuilt.generation` and `rebuilt.position`): the live table is dropped, the
    /// rebuild table renamed and indexed (indexes built ahead are renamed), the live checkpoint
    /// takes the rebuild's position and version with a new generation, and the rebuild
    /// checkpoint is removed.
    fn swap<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<Swapped, StoreError>>;

    /// A consistent view of the live copy of `kind`, held until dropped.
    fn snapshot(&self, kind: Kind) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>>;

    /// A page of rows.
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Rows, StoreError>>;

    /// Whether a reader whose checkpoint is `checkpoint` has read the event at `position`
    /// (in the log's read order; on PostgreSQL that is `(transaction, position)`, so positions
    /// are never compared directly). False for a position that is not in the log.
    fn covers(
        &self,
        checkpoint: Position,
        position: Position,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// How many events of the log come after `position` in read order (the whole log for
    /// `Position::START`): the lag of a checkpoint.
    fn events_after(&self, position: Position) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Tries to take the lease on applying `kind`; `None` when another runner holds it.
    fn lease(&self, kind: Kind) -> BoxFuture<'_, Result<Option<Box<dyn Lease>>, StoreError>>;

    /// Fires when other processes may have appended (PostgreSQL: LISTEN to what writers
    /// notify after their commits; SQLite: a watch on `PRAGMA data_version`); may never fire,
    /// the runner polls every [`poll_interval`](Self::poll_interval) as well.
    fn wakeups(&self) -> BoxStream<'static, ()>;

    /// How often a caught-up runner looks for new events when nothing woke it.
    fn poll_interval(&self) -> Duration;
}

/// A lease that is always held: for backends where one process applies (SQLite, memory) and
/// the conditional checkpoint update alone keeps concurrent appliers correct.
pub struct LocalLease;

impl Lease for LocalLease {
    fn alive(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}
