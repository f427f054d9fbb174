//! What a backend provides to keep read models: tables built from specs, checkpoints, leases
//! and queries.
//!
//! The backends (`ledger-postgres`, `ledger-sqlite`, `ledger-memory`) implement
//! [`ProjectionStore`] for any [`Schema`]; the runner, rebuilds and the read models' queries use
//! only this trait, so no SQL and no backend error type leaves the backend crates, and the
//! backends never name a read model.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, Position, StoreError};
use serde::Serialize;

use crate::fold::TableWrite;
use crate::spec::{Schema, Slot, TableSpec};
use crate::value::{Key, Row, Value};

/// Where one copy of a read model stands: a row of the checkpoint table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The read model.
    pub name: String,
    /// Which copy.
    pub slot: Slot,
    /// The read model version its tables were built with.
    pub version: u32,
    /// Changes every time the copy is created or swapped, so a writer that loaded an older
    /// generation can never commit into a newer one.
    pub generation: i64,
    /// The position of the last event read (`Position::START`: none yet).
    pub position: Position,
    /// How many events of the log were read into it.
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
            name: self.name.clone(),
            slot: self.slot,
            generation: self.generation,
            position: self.position,
            events: self.events,
        }
    }
}

/// A copy of a read model an applier writes to, and where it expects its checkpoint to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The read model.
    pub name: String,
    /// Which copy.
    pub slot: Slot,
    /// The generation the applier loaded.
    pub generation: i64,
    /// The checkpoint the applier loaded or last wrote.
    pub position: Position,
    /// The events read so far.
    pub events: u64,
}

/// Most values the [`Condition::In`] lists of one query may hold together: stays under
/// SQLite's 32,766 bound parameters with room for the rest of the query.
pub const MAX_IN_VALUES: usize = 30_000;

/// A condition on one column of a query (the column must be the table's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The column equals the value.
    Eq(&'static str, Value),
    /// The column is greater than the value.
    Gt(&'static str, Value),
    /// The column is greater than or equal to the value.
    Ge(&'static str, Value),
    /// The column is less than the value.
    Lt(&'static str, Value),
    /// The column is less than or equal to the value.
    Le(&'static str, Value),
    /// The column holds no value.
    IsNull(&'static str),
    /// The column equals one of the values (none listed: no row; a listed null matches none).
    In(&'static str, Vec<Value>),
}

impl Condition {
    /// The column it tests.
    pub fn column(&self) -> &'static str {
        match self {
            Condition::Eq(c, _)
            | Condition::Gt(c, _)
            | Condition::Ge(c, _)
            | Condition::Lt(c, _)
            | Condition::Le(c, _)
            | Condition::IsNull(c)
            | Condition::In(c, _) => c,
        }
    }

    /// Whether the value `v` of its column passes (SQL semantics: a null passes only
    /// `IsNull`, and a null compared with anything, or listed by `In`, passes nothing).
    pub fn passes(&self, v: &Value) -> bool {
        let (w, holds): (&Value, fn(&Value, &Value) -> bool) = match self {
            Condition::IsNull(_) => return *v == Value::Null,
            Condition::In(_, values) => return *v != Value::Null && values.contains(v),
            Condition::Eq(_, w) => (w, |v, w| v == w),
            Condition::Gt(_, w) => (w, |v, w| v > w),
            Condition::Ge(_, w) => (w, |v, w| v >= w),
            Condition::Lt(_, w) => (w, |v, w| v < w),
            Condition::Le(_, w) => (w, |v, w| v <= w),
        };
        *v != Value::Null && *w != Value::Null && holds(v, w)
    }
}

/// A page of rows of one table, in key order (or its reverse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The table.
    pub table: &'static TableSpec,
    /// Which copy.
    pub slot: Slot,
    /// Conditions every row passes.
    pub conditions: Vec<Condition>,
    /// Only rows whose key is after this one (before it, when descending).
    pub after: Option<Key>,
    /// At most this many rows.
    pub limit: usize,
    /// Rows in descending key order.
    pub descending: bool,
}

impl Query {
    /// The first `limit` live rows of `table`.
    pub fn new(table: &'static TableSpec, limit: usize) -> Self {
        Self {
            table,
            slot: Slot::Live,
            conditions: Vec::new(),
            after: None,
            limit,
            descending: false,
        }
    }

    /// The same query, in descending key order when `descending`.
    pub fn descending(mut self, descending: bool) -> Self {
        self.descending = descending;
        self
    }

    /// The same query with one more condition.
    pub fn when(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// The same query, rows after `after` only.
    pub fn after(mut self, after: Option<Key>) -> Self {
        self.after = after;
        self
    }

    /// The same query on another copy.
    pub fn slot(mut self, slot: Slot) -> Self {
        self.slot = slot;
        self
    }

    /// Whether a row passes the conditions and comes after `after` in the query's order (what
    /// a backend without SQL evaluates); conditions on columns the table lacks pass no row.
    pub fn passes(&self, row: &[Value]) -> bool {
        let after = self.after.as_ref().is_none_or(|a| {
            let key = &row[..self.table.key.min(row.len())];
            if self.descending {
                key < &a[..]
            } else {
                key > &a[..]
            }
        });
        after
            && self.conditions.iter().all(|c| {
                self.table
                    .column(c.column())
                    .and_then(|i| row.get(i))
                    .is_some_and(|v| c.passes(v))
            })
    }
}

/// The exclusive right to apply one read model, held until dropped (or lost).
pub trait Lease: Send {
    /// Whether the lease still holds (PostgreSQL: its session is still there).
    fn alive(&mut self) -> BoxFuture<'_, bool>;
}

/// A lease that is always held: for backends where one process applies (SQLite, memory) and
/// the conditional checkpoint update alone keeps concurrent appliers correct.
pub struct LocalLease;

impl Lease for LocalLease {
    fn alive(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// The transaction one batch is applied in: the checkpoint has moved already; rows are
/// loaded, written, and everything commits together (or nothing, when dropped).
pub trait ApplyTx: Send {
    /// The rows of `keys` (sorted) in `table`'s copy, those that exist, in key order.
    fn load<'a>(
        &'a mut self,
        table: &'static TableSpec,
        keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>>;

    /// Writes the rows of a fold (every table's write, in as few statements as it can).
    fn write(&mut self, writes: Vec<TableWrite>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Commits the rows with the checkpoint.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// A consistent view of a read model's live copy: its checkpoint and rows as of one moment,
/// while appliers keep writing.
pub trait Snapshot: Send {
    /// The live checkpoint in this view (`None`: the read model was never created).
    fn checkpoint(&self) -> Option<Checkpoint>;

    /// Live rows of `table` in key order after `after`, at most `limit`, in this view.
    fn rows<'a>(
        &'a mut self,
        table: &'static TableSpec,
        after: Option<&'a Key>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>>;
}

/// Whether a swap happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swapped {
    /// The rebuilt copy is live now.
    Yes,
    /// The rebuild copy's checkpoint is not where the caller expected: someone else wrote it.
    Moved,
}

/// The tables, checkpoints, leases and queries of read models on one database, for any
/// [`Schema`].
pub trait ProjectionStore: Send + Sync {
    /// Every checkpoint row (live and rebuild copies, of every read model ever created).
    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>>;

    /// The checkpoint of one copy, `None` when it does not exist.
    fn checkpoint<'a>(
        &'a self,
        name: &'a str,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>>;

    /// (Re)creates one copy of `schema` empty, at `Position::START`, with `schema.version` and
    /// a new generation: its tables are dropped if they exist and created from their specs
    /// (the live copy with its indexes, a rebuild copy without: they are built when it goes
    /// live).
    fn create<'a>(
        &'a self,
        schema: &'static Schema,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Checkpoint, StoreError>>;

    /// Drops a read model's rebuild copy (its tables and checkpoint), if any.
    fn drop_rebuild(&self, schema: &'static Schema) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Opens the transaction of one batch of `events` events ending at `to`: the checkpoint of
    /// `target` moves to `to` (adding `events`, recording `owner`) only if it is still at
    /// `target.generation` and `target.position`; `None`, writing nothing, when it had moved.
    fn begin<'a>(
        &'a self,
        schema: &'static Schema,
        target: &'a Target,
        to: Position,
        events: u64,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ApplyTx>>, StoreError>>;

    /// Builds the secondary indexes of a filled rebuild copy ahead of its swap, outside the
    /// swap's transaction, where the backend can rename indexes (PostgreSQL); elsewhere the
    /// swap builds them. Idempotent; rows written afterwards keep the indexes up to date.
    fn build_indexes<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Atomically replaces the live copy of `schema` with its rebuild copy (which must still
    /// be at `rebuilt.generation` and `rebuilt.position`): the live tables are dropped, the
    /// rebuild tables renamed and indexed, the live checkpoint takes the rebuild's position
    /// and version with a new generation, and the rebuild checkpoint is removed.
    fn swap<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<Swapped, StoreError>>;

    /// A consistent view of the live copy of `schema`, held until dropped.
    fn snapshot(
        &self,
        schema: &'static Schema,
    ) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>>;

    /// A page of rows.
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>>;

    /// Tries to take the lease on applying the read model `name`; `None` when another runner
    /// holds it.
    fn lease<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, StoreError>>;

    /// Fires when other processes may have appended; may never fire: the runner polls every
    /// [`poll_interval`](Self::poll_interval) as well.
    fn wakeups(&self) -> BoxStream<'static, ()>;

    /// How often a caught-up runner looks for new events when nothing woke it.
    fn poll_interval(&self) -> Duration;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_passes_listed_values_only() {
        let listed = Condition::In("c", vec![Value::Int(2), Value::Null, Value::Int(5)]);
        assert_eq!(listed.column(), "c");
        assert!(listed.passes(&Value::Int(2)) && listed.passes(&Value::Int(5)));
        assert!(!listed.passes(&Value::Int(3)));
        assert!(
            !listed.passes(&Value::Null),
            "a listed null matches no null"
        );
        assert!(!Condition::In("c", vec![]).passes(&Value::Int(2)));
        assert!(!Condition::In("c", vec![]).passes(&Value::Null));
        for v in [Value::Int(1), Value::Int(2), Value::Null] {
            for w in [Value::Int(1), Value::Null] {
                assert_eq!(
                    Condition::In("c", vec![w.clone()]).passes(&v),
                    Condition::Eq("c", w.clone()).passes(&v),
                    "{v:?} in [{w:?}]"
                );
            }
        }
    }
}
