//! Read models' tables, checkpoints, leases and queries on PostgreSQL, for any spec
//! ([`ledger_projector::ProjectionStore`]).
//!
//! A batch is one transaction: the conditional checkpoint update first (it locks the checkpoint
//! row, so concurrent appliers and swaps queue behind it), then one `SELECT` of the rows the
//! batch touches per table, and one statement writing every table's rows (see
//! [`crate::rows`]). Tables are created from their specs ([`crate::ddl`]); a rebuild fills
//! `<table>_rebuild` copies, indexes them and renames them in, all tables of a read model in
//! one transaction. One runner per read model holds a session advisory lock keyed by a stable
//! hash of its name ([`lease_key`]); new events wake runners through `LISTEN ledger_events`
//! (writing processes notify after their commits: `crate::wakeup`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, Position, StoreError};
use ledger_projector::check;
use ledger_projector::{
    ApplyTx, Checkpoint, Key, Lease, ProjectionStore, Query, Row, Schema, Slot, Snapshot, Swapped,
    TableSpec, TableWrite, Target,
};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::watch;

use crate::ddl;
use crate::error::from_sqlx;
use crate::log::{apply_application, int};
use crate::rows::{decode, key_arrays, load_sql, query_sql, write_statement};
use crate::store::PgStore;
use crate::tx::{begin, commit};
use crate::wakeup::CHANNEL;

/// How often a caught-up runner polls when no notification came.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a lease check may take before the lease counts as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the lease key hashes before the read model's name (see [`lease_key`]).
const LEASE_NAMESPACE: &str = "ledger-projection:";

/// One checkpoint.
const CHECKPOINT: &str = "SELECT name, slot, version, generation, position, events, owner, \
     updated_at FROM projection_checkpoints WHERE name = $1 AND slot = $2";

/// Every checkpoint.
const CHECKPOINTS: &str = "SELECT name, slot, version, generation, position, events, owner, \
     updated_at FROM projection_checkpoints ORDER BY name, slot";

/// Opens a batch's transaction. Read models are derived data: the commit need not wait for the
/// WAL flush. A crash may lose the last batches, rows and checkpoint together, and the runner
/// applies them again; the events themselves are committed durably by their writers. No JIT:
/// compiling a batch's statements costs more than running them. It names itself
/// ([`apply_application!`]) before it writes, so readers of the log do not wait for it: it
/// appends no event.
const BEGIN_APPLY: &str = concat!(
    "BEGIN; SET LOCAL synchronous_commit = off; SET LOCAL jit = off; \
     SET LOCAL application_name = '",
    apply_application!(),
    "'"
);

/// Moves the checkpoint of copy (`$1` name, `$2` slot) to `$5`, adding `$6` events and
/// recording owner `$7`, only if it is still at generation `$3` and position `$4`.
const ADVANCE: &str = "UPDATE projection_checkpoints \
     SET position = $5, events = events + $6, owner = $7, updated_at = now() \
     WHERE name = $1 AND slot = $2 AND generation = $3 AND position = $4";

/// Creates or resets a checkpoint: `$1` name, `$2` slot, `$3` version, `$4` generation,
/// `$5` position, `$6` events, `$7` owner.
const RESET: &str = "INSERT INTO projection_checkpoints \
     (name, slot, version, generation, position, events, owner, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
     ON CONFLICT (name, slot) DO UPDATE SET version = EXCLUDED.version, \
     generation = EXCLUDED.generation, position = EXCLUDED.position, events = EXCLUDED.events, \
     owner = EXCLUDED.owner, updated_at = now() \
     RETURNING name, slot, version, generation, position, events, owner, updated_at";

/// Removes a checkpoint.
const DELETE_CHECKPOINT: &str = "DELETE FROM projection_checkpoints WHERE name = $1 AND slot = $2";

/// Locks a checkpoint row until the end of the transaction.
const LOCK_CHECKPOINT: &str = "SELECT name, slot, version, generation, position, events, owner, \
     updated_at FROM projection_checkpoints WHERE name = $1 AND slot = $2 FOR UPDATE";

/// Opens the transaction a snapshot reads the live tables in.
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// Takes a lease if free.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";

/// A checkpoint row.
type CheckpointRow = (
    String,
    String,
    i32,
    i64,
    i64,
    i64,
    Option<String>,
    DateTime<Utc>,
);

/// Decodes a checkpoint row (`None` for a slot or numbers this code does not know).
fn checkpoint_of(row: CheckpointRow) -> Option<Checkpoint> {
    let (name, slot, version, generation, position, events, owner, updated_at) = row;
    Some(Checkpoint {
        name,
        slot: Slot::parse(&slot)?,
        version: u32::try_from(version).ok()?,
        generation,
        position: Position(u64::try_from(position).ok()?),
        events: u64::try_from(events).ok()?,
        owner,
        updated_at,
    })
}

/// A fresh generation number.
fn new_generation() -> i64 {
    let (_, low) = uuid::Uuid::now_v7().as_u64_pair();
    (low >> 1) as i64
}

/// The advisory lock key of the lease on applying the read model `name`: the 64-bit FNV-1a
/// hash of `ledger-projection:<name>` (UTF-8), as a signed `bigint`. Stable across processes,
/// builds and versions, unlike Rust's seeded hashers, so every process of every version asks
/// for the same lock.
pub(crate) fn lease_key(name: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = LEASE_NAMESPACE
        .bytes()
        .chain(name.bytes())
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    hash as i64
}

/// Checks that `target` is a copy of `schema`.
fn check_target(schema: &Schema, target: &Target) -> Result<(), StoreError> {
    if target.name == schema.name {
        Ok(())
    } else {
        Err(StoreError::backend(format!(
            "a copy of read model {} is not one of {}",
            target.name, schema.name
        )))
    }
}

/// The read models' tables of a PostgreSQL ledger.
#[derive(Clone)]
pub struct PgProjections {
    pool: PgPool,
    wake: Arc<OnceLock<watch::Sender<u64>>>,
}

impl PgStore {
    /// The read models' tables kept in this store's database (same connection pool).
    pub fn projections(&self) -> PgProjections {
        PgProjections {
            pool: self.pool.clone(),
            wake: Arc::default(),
        }
    }
}

/// Reads one checkpoint with `sql` ([`CHECKPOINT`] or [`LOCK_CHECKPOINT`]).
async fn read_checkpoint(
    conn: &mut PgConnection,
    sql: &'static str,
    name: &str,
    slot: Slot,
) -> Result<Option<Checkpoint>, StoreError> {
    let row: Option<CheckpointRow> = sqlx::query_as(sql)
        .bind(name)
        .bind(slot.name())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(row.and_then(checkpoint_of))
}

/// Creates or resets the checkpoint of `name`'s copy `slot`.
async fn reset(
    conn: &mut PgConnection,
    name: &str,
    slot: Slot,
    version: u32,
    position: Position,
    events: u64,
    owner: Option<&str>,
) -> Result<Checkpoint, StoreError> {
    let row: CheckpointRow = sqlx::query_as(RESET)
        .bind(name)
        .bind(slot.name())
        .bind(i32::try_from(version).unwrap_or(i32::MAX))
        .bind(new_generation())
        .bind(int(position.0))
        .bind(int(events))
        .bind(owner)
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    checkpoint_of(row).ok_or_else(|| StoreError::backend("a checkpoint does not decode"))
}

/// Removes the checkpoint of `name`'s copy `slot`.
async fn delete_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    slot: Slot,
) -> Result<(), StoreError> {
    sqlx::query(DELETE_CHECKPOINT)
        .bind(name)
        .bind(slot.name())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Runs DDL built from checked specs.
async fn run_ddl(conn: &mut PgConnection, ddl: String) -> Result<(), StoreError> {
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Whether the table `$1` exists.
const TABLE_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

/// Runs a page query on a connection.
async fn run_query(conn: &mut PgConnection, query: &Query) -> Result<Vec<Row>, StoreError> {
    let spec = query.table;
    let (sql, params) = query_sql(query)?;
    let mut statement = sqlx::query(AssertSqlSafe(sql)).persistent(false);
    for param in params {
        statement = param.bind(statement);
    }
    statement
        .try_map(|row: PgRow| decode(spec, &row))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)
}

impl ProjectionStore for PgProjections {
    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<CheckpointRow> = sqlx::query_as(CHECKPOINTS)
                .fetch_all(&self.pool)
                .await
                .map_err(from_sqlx)?;
            Ok(rows.into_iter().filter_map(checkpoint_of).collect())
        })
    }

    fn checkpoint<'a>(
        &'a self,
        name: &'a str,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            read_checkpoint(&mut conn, CHECKPOINT, name, slot).await
        })
    }

    fn create<'a>(
        &'a self,
        schema: &'static Schema,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        Box::pin(async move {
            ddl::check(schema)?;
            let mut tx = begin(&self.pool, None).await?;
            run_ddl(&mut tx, ddl::recreate(schema, slot)).await?;
            let checkpoint = reset(
                &mut tx,
                schema.name,
                slot,
                schema.version,
                Position::START,
                0,
                None,
            )
            .await?;
            commit(tx).await?;
            Ok(checkpoint)
        })
    }

    fn drop_rebuild(&self, schema: &'static Schema) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            ddl::check(schema)?;
            let mut tx = begin(&self.pool, None).await?;
            run_ddl(&mut tx, ddl::drop_rebuild(schema)).await?;
            delete_checkpoint(&mut tx, schema.name, Slot::Rebuild).await?;
            commit(tx).await
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
            ddl::check(schema)?;
            check_target(schema, target)?;
            let mut tx = begin(&self.pool, Some(BEGIN_APPLY)).await?;
            let moved = sqlx::query(ADVANCE)
                .bind(schema.name)
                .bind(target.slot.name())
                .bind(target.generation)
                .bind(int(target.position.0))
                .bind(int(to.0))
                .bind(int(events))
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?
                .rows_affected();
            if moved != 1 {
                // Nothing was written; dropping the transaction rolls it back.
                drop(tx);
                return Ok(None);
            }
            Ok(Some(Box::new(PgApply {
                tx,
                schema,
                slot: target.slot,
            }) as Box<dyn ApplyTx>))
        })
    }

    fn build_indexes<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            ddl::check(schema)?;
            check_target(schema, rebuilt)?;
            let mut tx = begin(&self.pool, None).await?;
            run_ddl(&mut tx, ddl::build_rebuild_indexes(schema)).await?;
            commit(tx).await
        })
    }

    fn swap<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        Box::pin(async move {
            ddl::check(schema)?;
            check_target(schema, rebuilt)?;
            let name = schema.name;
            let mut tx = begin(&self.pool, None).await?;
            let current = read_checkpoint(&mut tx, LOCK_CHECKPOINT, name, Slot::Rebuild).await?;
            let still = current.as_ref().is_some_and(|c| {
                c.generation == rebuilt.generation && c.position == rebuilt.position
            });
            let Some(current) = current.filter(|_| still) else {
                drop(tx);
                return Ok(Swapped::Moved);
            };
            // Queue behind any batch being applied to the live copy.
            read_checkpoint(&mut tx, LOCK_CHECKPOINT, name, Slot::Live).await?;
            run_ddl(&mut tx, ddl::swap(schema)).await?;
            reset(
                &mut tx,
                name,
                Slot::Live,
                current.version,
                current.position,
                current.events,
                current.owner.as_deref(),
            )
            .await?;
            delete_checkpoint(&mut tx, name, Slot::Rebuild).await?;
            commit(tx).await?;
            Ok(Swapped::Yes)
        })
    }

    fn snapshot(
        &self,
        schema: &'static Schema,
    ) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        Box::pin(async move {
            ddl::check(schema)?;
            let mut tx = begin(&self.pool, Some(BEGIN_SNAPSHOT)).await?;
            let checkpoint = read_checkpoint(&mut tx, CHECKPOINT, schema.name, Slot::Live).await?;
            Ok(Box::new(PgSnapshot {
                tx,
                schema,
                checkpoint,
            }) as Box<dyn Snapshot>)
        })
    }

    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        Box::pin(async move {
            ddl::check_table(query.table)?;
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            let result = run_query(&mut conn, query).await;
            // A read model never created (its runners never ran) has no rows yet.
            if result.is_err() && query.table.validate().is_ok() {
                let table = query.table.table(query.slot);
                let exists: bool = sqlx::query_scalar(TABLE_EXISTS)
                    .bind(&table)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
                if !exists {
                    return Ok(Vec::new());
                }
                // Created by its runner between the query and the check: ask again.
                return run_query(&mut conn, query).await;
            }
            result
        })
    }

    fn lease<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            let got: bool = sqlx::query_scalar(TRY_LOCK)
                .bind(lease_key(name))
                .fetch_one(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            if !got {
                return Ok(None);
            }
            // The lock lives as long as this session: the connection leaves the pool and its
            // end (drop, crash, network loss) releases the lease.
            Ok(Some(
                Box::new(PgLease(Some(conn.detach()))) as Box<dyn Lease>
            ))
        })
    }

    fn wakeups(&self) -> BoxStream<'static, ()> {
        let sender = self.wake.get_or_init(|| {
            let (tx, _) = watch::channel(0u64);
            tokio::spawn(listen(self.pool.clone(), tx.clone()));
            tx
        });
        let mut rx = sender.subscribe();
        async_stream::stream! {
            while rx.changed().await.is_ok() {
                yield ();
            }
        }
        .boxed()
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }
}

/// Forwards `NOTIFY ledger_events` to `tx` for as long as the process runs; reconnects after
/// failures (runners poll meanwhile).
async fn listen(pool: PgPool, tx: watch::Sender<u64>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "projections: cannot LISTEN for new events; polling");
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "projections: cannot LISTEN for new events; polling");
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        }
        // Events may have committed while (re)connecting.
        tx.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => tx.send_modify(|n| *n = n.wrapping_add(1)),
                Ok(None) => tx.send_modify(|n| *n = n.wrapping_add(1)),
                Err(e) => {
                    tracing::warn!(error = %e, "projections: lost the LISTEN connection");
                    break;
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The transaction of one batch, its checkpoint already moved.
struct PgApply {
    tx: Transaction<'static, Postgres>,
    schema: &'static Schema,
    slot: Slot,
}

impl ApplyTx for PgApply {
    fn load<'a>(
        &'a mut self,
        table: &'static TableSpec,
        keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        Box::pin(async move {
            check::table_of(self.schema, table)?;
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut statement =
                sqlx::query(AssertSqlSafe(load_sql(table, &table.table(self.slot))))
                    .persistent(false);
            for array in key_arrays(table, keys)? {
                statement = array.bind(statement);
            }
            statement
                .try_map(|row: PgRow| decode(table, &row))
                .fetch_all(&mut *self.tx)
                .await
                .map_err(from_sqlx)
        })
    }

    fn write(&mut self, writes: Vec<TableWrite>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for w in &writes {
                check::table_of(self.schema, w.table)?;
            }
            let Some((sql, arrays)) = write_statement(&writes, self.slot)? else {
                return Ok(());
            };
            let mut statement = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for array in arrays {
                statement = array.bind(statement);
            }
            statement.execute(&mut *self.tx).await.map_err(from_sqlx)?;
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(commit(self.tx))
    }
}

/// A read model's lease: a session advisory lock held on its own connection.
struct PgLease(Option<PgConnection>);

impl Lease for PgLease {
    fn alive(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let Some(conn) = self.0.as_mut() else {
                return false;
            };
            let ok = tokio::time::timeout(LEASE_CHECK_TIMEOUT, conn.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            if !ok {
                self.0 = None;
            }
            ok
        })
    }
}

/// A repeatable-read, read-only transaction over a read model's live tables.
struct PgSnapshot {
    tx: Transaction<'static, Postgres>,
    schema: &'static Schema,
    checkpoint: Option<Checkpoint>,
}

impl Snapshot for PgSnapshot {
    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn rows<'a>(
        &'a mut self,
        table: &'static TableSpec,
        after: Option<&'a Key>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        Box::pin(async move {
            check::table_of(self.schema, table)?;
            if self.checkpoint.is_none() {
                return Ok(Vec::new());
            }
            let query = Query::new(table, limit).after(after.cloned());
            run_query(&mut self.tx, &query).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_are_a_stable_hash_of_the_name() {
        // FNV-1a 64 of "ledger-projection:" followed by the name: fixed values, so a change of
        // the hash (which would let two versions run one read model at once) fails here.
        assert_eq!(lease_key("a"), lease_key("a"));
        assert_ne!(lease_key("a"), lease_key("b"));
        let fnv = |s: &str| {
            s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }) as i64
        };
        assert_eq!(lease_key("things"), fnv("ledger-projection:things"));
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325u64 as i64);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
    }
}
