//! Projections kept in process memory, beside `ledger-memory`'s store: for tests and for the
//! HTTP API on the memory backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, EventStore, Position, ReadAll, StoreError};
use serde_json::Value;

use crate::apply::Table;
use crate::batch::{Batch, Decoded};
use crate::rows::{RowKey, Rows, time_text};
use crate::store::{
    Checkpoint, Filter, Lease, LocalLease, LogPage, ProjectionStore, Query, Snapshot, Swapped,
    Target,
};
use crate::{Kind, Slot};

/// One copy of a projection: its checkpoint and its table.
#[derive(Clone)]
struct Copy {
    checkpoint: Checkpoint,
    table: Table,
}

/// Projections in memory, reading the log of the store they were made with (positions of the
/// memory store follow commit order, so checkpoints compare as numbers).
#[derive(Clone)]
pub struct MemoryProjections {
    events: Arc<dyn EventStore>,
    copies: Arc<Mutex<BTreeMap<(Kind, Slot), Copy>>>,
    generations: Arc<Mutex<i64>>,
}

impl MemoryProjections {
    /// Projections of the log of `events`.
    pub fn new(events: Arc<dyn EventStore>) -> Self {
        Self {
            events,
            copies: Arc::default(),
            generations: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Kind, Slot), Copy>> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_generation(&self) -> i64 {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        *g += 1;
        *g
    }

    /// Replaces one live row by hand, as an operator editing a table would (tests use it to
    /// check that `verify` notices).
    pub fn tamper(&self, kind: Kind, key: RowKey, row: Value) {
        if let Some(copy) = self.lock().get_mut(&(kind, Slot::Live)) {
            copy.table.set_raw(key, row);
        }
    }
}

/// Whether a row (as JSON) passes a filter.
fn passes(filter: &Filter, row: &Value) -> bool {
    match filter {
        Filter::All => true,
        Filter::Phase(p) => row["phase"] == serde_json::to_value(p).expect("phases serialize"),
        Filter::Status(s) => row["status"] == serde_json::to_value(s).expect("statuses serialize"),
        Filter::ActiveAt(now) => {
            row["released_at"].is_null()
                && row["expires_at"]
                    .as_str()
                    .and_then(|t| time_text::parse(t).ok())
                    .is_some_and(|t| t > *now)
        }
    }
}

impl ProjectionStore for MemoryProjections {
    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'_, Result<LogPage, StoreError>> {
        Box::pin(async move {
            let mut log = self.events.read_all(ReadAll::after(after));
            let mut events = Vec::new();
            while events.len() < limit {
                match log.next().await {
                    Some(e) => events.push(Decoded::from_envelope(e?)),
                    None => break,
                }
            }
            Ok(LogPage {
                events,
                horizon: u64::MAX,
            })
        })
    }

    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }

    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
        let all = self.lock().values().map(|c| c.checkpoint.clone()).collect();
        Box::pin(async move { Ok(all) })
    }

    fn checkpoint(
        &self,
        kind: Kind,
        slot: Slot,
    ) -> BoxFuture<'_, Result<Option<Checkpoint>, StoreError>> {
        let cp = self.lock().get(&(kind, slot)).map(|c| c.checkpoint.clone());
        Box::pin(async move { Ok(cp) })
    }

    fn create(&self, kind: Kind, slot: Slot) -> BoxFuture<'_, Result<Checkpoint, StoreError>> {
        let checkpoint = Checkpoint {
            kind,
            slot,
            version: kind.version(),
            generation: self.next_generation(),
            position: Position::START,
            events: 0,
            owner: None,
            updated_at: Utc::now(),
        };
        self.lock().insert(
            (kind, slot),
            Copy {
                checkpoint: checkpoint.clone(),
                table: Table::new(kind),
            },
        );
        Box::pin(async move { Ok(checkpoint) })
    }

    fn drop_rebuild(&self, kind: Kind) -> BoxFuture<'_, Result<(), StoreError>> {
        self.lock().remove(&(kind, Slot::Rebuild));
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(
        &'a self,
        target: &'a Target,
        batch: &'a Batch,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let Some(last) = batch.last() else {
                return Ok(true);
            };
            let mut copies = self.lock();
            let Some(copy) = copies.get_mut(&(target.kind, target.slot)).filter(|c| {
                c.checkpoint.generation == target.generation
                    && c.checkpoint.position == target.position
            }) else {
                return Ok(false);
            };
            copy.table.apply(batch);
            copy.checkpoint.position = last;
            copy.checkpoint.events += batch.len();
            copy.checkpoint.owner = Some(owner.to_string());
            copy.checkpoint.updated_at = Utc::now();
            Ok(true)
        })
    }

    fn build_indexes<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, Result<(), StoreError>> {
        // Rows in memory have no indexes.
        Box::pin(async { Ok(()) })
    }

    fn swap<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        Box::pin(async move {
            let generation = self.next_generation();
            let mut copies = self.lock();
            let key = (rebuilt.kind, Slot::Rebuild);
            let current = copies.get(&key).is_some_and(|c| {
                c.checkpoint.generation == rebuilt.generation
                    && c.checkpoint.position == rebuilt.position
            });
            if !current {
                return Ok(Swapped::Moved);
            }
            let mut copy = copies.remove(&key).expect("checked above");
            copy.checkpoint.slot = Slot::Live;
            copy.checkpoint.generation = generation;
            copy.checkpoint.updated_at = Utc::now();
            copies.insert((rebuilt.kind, Slot::Live), copy);
            Ok(Swapped::Yes)
        })
    }

    fn snapshot(&self, kind: Kind) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        let copy = self.lock().get(&(kind, Slot::Live)).cloned();
        Box::pin(async move {
            let snapshot = MemorySnapshot {
                checkpoint: copy.as_ref().map(|c| c.checkpoint.clone()),
                table: copy.map_or_else(|| Table::new(kind), |c| c.table),
            };
            Ok(Box::new(snapshot) as Box<dyn Snapshot>)
        })
    }

    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Rows, StoreError>> {
        let rows = match self.lock().get(&(query.kind, query.slot)) {
            None => Rows::empty(query.kind),
            Some(copy) => copy.table.page(query.after.as_ref(), query.limit, |row| {
                query
                    .tenant
                    .as_deref()
                    .is_none_or(|t| row["tenant_id"] == t)
                    && passes(&query.filter, row)
            }),
        };
        Box::pin(async move { Ok(rows) })
    }

    fn covers(
        &self,
        checkpoint: Position,
        position: Position,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(position != Position::START && position <= checkpoint) })
    }

    fn events_after(&self, position: Position) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut log = self.events.read_all(ReadAll::after(position));
            let mut n = 0;
            while let Some(e) = log.next().await {
                e?;
                n += 1;
            }
            Ok(n)
        })
    }

    fn lease(&self, _kind: Kind) -> BoxFuture<'_, Result<Option<Box<dyn Lease>>, StoreError>> {
        Box::pin(async { Ok(Some(Box::new(LocalLease) as Box<dyn Lease>)) })
    }

    fn wakeups(&self) -> BoxStream<'static, ()> {
        futures::stream::pending().boxed()
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(20)
    }
}

/// A copy of the live table taken at one moment.
struct MemorySnapshot {
    checkpoint: Option<Checkpoint>,
    table: Table,
}

impl Snapshot for MemorySnapshot {
    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn rows(
        &mut self,
        after: Option<RowKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Rows, StoreError>> {
        let rows = self.table.page(after.as_ref(), limit, |_| true);
        Box::pin(async move { Ok(rows) })
    }
}
