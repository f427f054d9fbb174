//! Read models kept in process memory, for any spec ([`ProjectionStore`]): for tests and for
//! the HTTP API on the memory backend.
//!
//! Each copy of a read model is its checkpoint and its [`Tables`]. Whoever writes (an open
//! batch, a create, a swap, a drop) holds one writer lock, as SQLite's single writer
//! connection does, so a batch's checkpoint cannot move under it; a batch's writes are staged
//! and land with its checkpoint at commit, or not at all when it is dropped. Snapshots share
//! the tables they saw; the next commit copies them before it writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, Position, StoreError};
use ledger_projector::check;
use ledger_projector::{
    ApplyTx, Checkpoint, Key, Lease, LocalLease, ProjectionStore, Query, Row, Schema, Slot,
    Snapshot, Swapped, TableSpec, TableWrite, Tables, Target,
};
use tokio::sync::{Mutex as WriterLock, OwnedMutexGuard};

/// How often a caught-up runner looks for new events when nothing woke it.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One copy of a read model: its checkpoint and its rows.
#[derive(Clone)]
struct ModelCopy {
    schema: &'static Schema,
    checkpoint: Checkpoint,
    tables: Arc<Tables>,
}

/// Every copy, by read model and slot.
#[derive(Default)]
struct State {
    copies: BTreeMap<(String, Slot), ModelCopy>,
    generations: i64,
}

impl State {
    fn next_generation(&mut self) -> i64 {
        self.generations += 1;
        self.generations
    }
}

/// What clones share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    writer: Arc<WriterLock<()>>,
}

/// Read models in process memory; clones share the same tables.
#[derive(Clone, Default)]
pub struct MemoryProjections {
    shared: Arc<Shared>,
}

impl MemoryProjections {
    /// No read model yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the writer lock.
    async fn writer(&self) -> OwnedMutexGuard<()> {
        self.shared.writer.clone().lock_owned().await
    }
}

impl ProjectionStore for MemoryProjections {
    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
        let all = self
            .state()
            .copies
            .values()
            .map(|c| c.checkpoint.clone())
            .collect();
        Box::pin(async move { Ok(all) })
    }

    fn checkpoint<'a>(
        &'a self,
        name: &'a str,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        let checkpoint = self
            .state()
            .copies
            .get(&(name.to_string(), slot))
            .map(|c| c.checkpoint.clone());
        Box::pin(async move { Ok(checkpoint) })
    }

    fn create<'a>(
        &'a self,
        schema: &'static Schema,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        Box::pin(async move {
            check::schema_usable(schema)?;
            let _writer = self.writer().await;
            let mut state = self.state();
            let checkpoint = Checkpoint {
                name: schema.name.to_string(),
                slot,
                version: schema.version,
                generation: state.next_generation(),
                position: Position::START,
                events: 0,
                owner: None,
                updated_at: Utc::now(),
            };
            let copy = ModelCopy {
                schema,
                checkpoint: checkpoint.clone(),
                tables: Arc::new(Tables::new(schema)),
            };
            state.copies.insert((schema.name.to_string(), slot), copy);
            Ok(checkpoint)
        })
    }

    fn drop_rebuild(&self, schema: &'static Schema) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let _writer = self.writer().await;
            self.state()
                .copies
                .remove(&(schema.name.to_string(), Slot::Rebuild));
            Ok(())
        })
    }

    fn begin<'a>(
        &'a self,
        schema: &'static Schema,
        target: &'a Target,
        to: Position,
        events: u64,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ApplyTx>>, StoreError>> {
        Box::pin(async move {
            check::schema_usable(schema)?;
            check::copy_of(schema, target)?;
            let writer = self.writer().await;
            let copy = (target.name.clone(), target.slot);
            let current = self.state().copies.get(&copy).is_some_and(|c| {
                c.checkpoint.generation == target.generation
                    && c.checkpoint.position == target.position
            });
            if !current {
                return Ok(None);
            }
            Ok(Some(Box::new(MemoryApply {
                projections: self.clone(),
                _writer: writer,
                schema,
                copy,
                to,
                events,
                owner: owner.to_string(),
                staged: Vec::new(),
            }) as Box<dyn ApplyTx>))
        })
    }

    fn build_indexes<'a>(
        &'a self,
        _: &'static Schema,
        _: &'a Target,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        // Rows in memory have no indexes.
        Box::pin(async { Ok(()) })
    }

    fn swap<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        Box::pin(async move {
            check::copy_of(schema, rebuilt)?;
            let _writer = self.writer().await;
            let mut state = self.state();
            let key = (schema.name.to_string(), Slot::Rebuild);
            let current = state.copies.get(&key).is_some_and(|c| {
                c.checkpoint.generation == rebuilt.generation
                    && c.checkpoint.position == rebuilt.position
            });
            if !current {
                return Ok(Swapped::Moved);
            }
            let mut copy = state.copies.remove(&key).ok_or_else(gone)?;
            copy.checkpoint.slot = Slot::Live;
            copy.checkpoint.generation = state.next_generation();
            copy.checkpoint.updated_at = Utc::now();
            state
                .copies
                .insert((schema.name.to_string(), Slot::Live), copy);
            Ok(Swapped::Yes)
        })
    }

    fn snapshot(
        &self,
        schema: &'static Schema,
    ) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        let copy = self
            .state()
            .copies
            .get(&(schema.name.to_string(), Slot::Live))
            .cloned();
        Box::pin(async move {
            let snapshot = MemorySnapshot {
                schema,
                checkpoint: copy.as_ref().map(|c| c.checkpoint.clone()),
                tables: copy.map_or_else(|| Arc::new(Tables::new(schema)), |c| c.tables),
            };
            Ok(Box::new(snapshot) as Box<dyn Snapshot>)
        })
    }

    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        Box::pin(async move {
            query.check()?;
            let table = query.table;
            let state = self.state();
            let copy = state.copies.iter().find(|((_, slot), c)| {
                *slot == query.slot && c.schema.tables.iter().any(|t| t.name == table.name)
            });
            Ok(copy.map_or_else(Vec::new, |(_, c)| c.tables.select(query)))
        })
    }

    fn lease<'a>(
        &'a self,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, StoreError>> {
        Box::pin(async { Ok(Some(Box::new(LocalLease) as Box<dyn Lease>)) })
    }

    fn wakeups(&self) -> BoxStream<'static, ()> {
        futures::stream::pending().boxed()
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }
}

/// An open batch: it holds the writer lock and stages its writes until it commits.
struct MemoryApply {
    projections: MemoryProjections,
    _writer: OwnedMutexGuard<()>,
    schema: &'static Schema,
    copy: (String, Slot),
    to: Position,
    events: u64,
    owner: String,
    staged: Vec<TableWrite>,
}

impl MemoryApply {
    /// The rows of `keys` as this batch sees them: committed, then changed by its own writes.
    fn load_now(&self, table: &'static TableSpec, keys: &[Key]) -> Result<Vec<Row>, StoreError> {
        check::table_of(self.schema, table)?;
        let rows = {
            let state = self.projections.state();
            let copy = state.copies.get(&self.copy).ok_or_else(gone)?;
            copy.tables.load(table, keys)
        };
        let mut staged = self.staged.iter().filter(|w| w.table == table).peekable();
        if staged.peek().is_none() {
            return Ok(rows);
        }
        let wanted: BTreeSet<&Key> = keys.iter().collect();
        let mut rows: BTreeMap<Key, Row> =
            rows.into_iter().map(|r| (table.key_of(&r), r)).collect();
        for write in staged {
            for row in write.inserts.iter().chain(&write.upserts) {
                let key = table.key_of(row);
                if wanted.contains(&key) {
                    rows.insert(key, row.clone());
                }
            }
            for key in &write.deletes {
                rows.remove(key);
            }
        }
        Ok(rows.into_values().collect())
    }
}

/// The copy of an open batch is gone (which its writer lock prevents).
fn gone() -> StoreError {
    StoreError::backend("the copy a batch writes to is gone")
}

impl ApplyTx for MemoryApply {
    fn load<'a>(
        &'a mut self,
        table: &'static TableSpec,
        keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        let rows = self.load_now(table, keys);
        Box::pin(async move { rows })
    }

    fn write(&mut self, writes: Vec<TableWrite>) -> BoxFuture<'_, Result<(), StoreError>> {
        let checked = writes
            .iter()
            .try_for_each(|w| check::table_of(self.schema, w.table));
        if checked.is_ok() {
            self.staged
                .extend(writes.into_iter().filter(|w| !w.is_empty()));
        }
        Box::pin(async move { checked })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        let this = *self;
        let committed = (|| {
            let mut state = this.projections.state();
            let copy = state.copies.get_mut(&this.copy).ok_or_else(gone)?;
            if !this.staged.is_empty() {
                Arc::make_mut(&mut copy.tables).write(this.staged);
            }
            let checkpoint = &mut copy.checkpoint;
            checkpoint.position = this.to;
            checkpoint.events += this.events;
            checkpoint.owner = Some(this.owner);
            checkpoint.updated_at = Utc::now();
            Ok(())
        })();
        Box::pin(async move { committed })
    }
}

/// The live tables of a read model as they were at one moment.
struct MemorySnapshot {
    schema: &'static Schema,
    checkpoint: Option<Checkpoint>,
    tables: Arc<Tables>,
}

impl Snapshot for MemorySnapshot {
    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn rows<'a>(
        &'a mut self,
        table: &'static TableSpec,
        after: Option<&'a Key>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        let rows = check::table_of(self.schema, table)
            .map(|()| self.tables.page(table, after, limit, |_| true));
        Box::pin(async move { rows })
    }
}
