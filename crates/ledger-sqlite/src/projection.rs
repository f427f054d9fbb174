//! Read models' tables, checkpoints and queries in the SQLite file, for any spec
//! ([`ledger_projector::ProjectionStore`]).
//!
//! Tables are created from their specs ([`crate::ddl`]). A batch is one `BEGIN IMMEDIATE`
//! transaction on the writer connection: the conditional checkpoint update, then per table one
//! `SELECT` of the rows the batch touches (its keys bound as one JSON array), multi-row
//! `INSERT ... ON CONFLICT DO UPDATE` statements of the changed rows, and one `DELETE` when
//! rows go ([`crate::rows`]). SQLite has one
//! writer at a time, so positions follow commit order and checkpoints compare as numbers.
//! Runners are woken by the appends of this process and, through `PRAGMA data_version`
//! (`crate::wakeup`), of other processes; they poll as well.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, Position, StoreError};
use ledger_projector::check;
use ledger_projector::{
    ApplyTx, Checkpoint, Key, Lease, LocalLease, ProjectionStore, Query, Row, Schema, Slot,
    Snapshot, Swapped, TableSpec, TableWrite, Target, time_text,
};
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection, Transaction};

use crate::ddl;
use crate::error::store_err;
use crate::read::int;
use crate::rows::{self, Statement, Statements};
use crate::store::{Inner, SqliteStore};

/// How often a caught-up runner looks for new events when no wake-up came.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One checkpoint.
const CHECKPOINT: &str = "SELECT name, slot, version, generation, position, events, owner, \
     updated_at FROM projection_checkpoints WHERE name = ?1 AND slot = ?2";

/// Every checkpoint.
const CHECKPOINTS: &str = "SELECT name, slot, version, generation, position, events, owner, \
     updated_at FROM projection_checkpoints ORDER BY name, slot";

/// Moves a checkpoint if it is still where the applier expects it.
const ADVANCE: &str = "UPDATE projection_checkpoints \
     SET position = ?5, events = events + ?6, owner = ?7, updated_at = ?8 \
     WHERE name = ?1 AND slot = ?2 AND generation = ?3 AND position = ?4";

/// Creates or resets a checkpoint: `?1` name, `?2` slot, `?3` version, `?4` generation,
/// `?5` position, `?6` events, `?7` owner, `?8` updated_at.
const RESET: &str = "INSERT INTO projection_checkpoints \
     (name, slot, version, generation, position, events, owner, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (name, slot) DO UPDATE SET version = excluded.version, \
     generation = excluded.generation, position = excluded.position, events = excluded.events, \
     owner = excluded.owner, updated_at = excluded.updated_at \
     RETURNING name, slot, version, generation, position, events, owner, updated_at";

/// Removes a checkpoint.
const DELETE_CHECKPOINT: &str = "DELETE FROM projection_checkpoints WHERE name = ?1 AND slot = ?2";

/// A checkpoint row.
type CheckpointRow = (String, String, i64, i64, i64, i64, Option<String>, String);

/// Decodes a checkpoint row (`None` for a slot this code does not know).
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
        updated_at: rows::parse_time(&updated_at)?,
    })
}

/// A fresh generation number.
fn new_generation() -> i64 {
    let (_, low) = uuid::Uuid::now_v7().as_u64_pair();
    (low >> 1) as i64
}

/// The wall clock as checkpoint text.
fn now() -> String {
    time_text(Utc::now())
}

/// The read models of a SQLite ledger: their tables, checkpoints and queries, in the store's
/// file (same writer and reader connections).
#[derive(Clone)]
pub struct SqliteProjections {
    store: SqliteStore,
    statements: Arc<Statements>,
}

impl SqliteStore {
    /// The read models kept in this store's file.
    pub fn projections(&self) -> SqliteProjections {
        SqliteProjections {
            store: self.clone(),
            statements: Arc::default(),
        }
    }
}

/// Reads one checkpoint on a connection.
async fn read_checkpoint(
    conn: &mut SqliteConnection,
    name: &str,
    slot: Slot,
) -> Result<Option<Checkpoint>, StoreError> {
    let row: Option<CheckpointRow> = sqlx::query_as(CHECKPOINT)
        .bind(name)
        .bind(slot.name())
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_err)?;
    Ok(row.and_then(checkpoint_of))
}

/// Creates or resets a checkpoint: empty at `schema`'s version, or taking over `from`'s
/// version, position, events and owner; always with a new generation.
async fn reset(
    conn: &mut SqliteConnection,
    schema: &Schema,
    slot: Slot,
    from: Option<&Checkpoint>,
) -> Result<Checkpoint, StoreError> {
    let row: CheckpointRow = sqlx::query_as(RESET)
        .bind(schema.name)
        .bind(slot.name())
        .bind(i64::from(from.map_or(schema.version, |c| c.version)))
        .bind(new_generation())
        .bind(int(from.map_or(0, |c| c.position.0)))
        .bind(int(from.map_or(0, |c| c.events)))
        .bind(from.and_then(|c| c.owner.clone()))
        .bind(now())
        .fetch_one(&mut *conn)
        .await
        .map_err(store_err)?;
    checkpoint_of(row).ok_or_else(|| StoreError::backend("a checkpoint does not decode"))
}

/// Removes a checkpoint.
async fn drop_checkpoint(
    conn: &mut SqliteConnection,
    name: &str,
    slot: Slot,
) -> Result<(), StoreError> {
    sqlx::query(DELETE_CHECKPOINT)
        .bind(name)
        .bind(slot.name())
        .execute(&mut *conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Runs several DDL statements.
async fn run_ddl(conn: &mut SqliteConnection, ddl: String) -> Result<(), StoreError> {
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&mut *conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Whether the table `?1` exists.
const TABLE_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)";

/// Runs a page query on a connection.
async fn run_query(conn: &mut SqliteConnection, query: &Query) -> Result<Vec<Row>, StoreError> {
    check::table_usable(query.table)?;
    let page = rows::page_sql(query)?;
    let mut q = sqlx::query(AssertSqlSafe(page.sql));
    for value in page.params {
        q = rows::bind(q, value.clone());
    }
    let spec = query.table;
    q.bind(int(query.limit as u64))
        .try_map(|row| rows::decode(spec, &row))
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)
}

impl SqliteProjections {
    /// The store's shared state: its writer's health records every projection write.
    fn inner(&self) -> &Arc<Inner> {
        &self.store.inner
    }

    /// A `BEGIN IMMEDIATE` transaction on the writer connection.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.inner()
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_err)
    }
}

impl ProjectionStore for SqliteProjections {
    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<CheckpointRow> = sqlx::query_as(CHECKPOINTS)
                .fetch_all(&self.inner().reader)
                .await
                .map_err(store_err)?;
            Ok(rows.into_iter().filter_map(checkpoint_of).collect())
        })
    }

    fn checkpoint<'a>(
        &'a self,
        name: &'a str,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner().reader.acquire().await.map_err(store_err)?;
            read_checkpoint(&mut conn, name, slot).await
        })
    }

    fn create<'a>(
        &'a self,
        schema: &'static Schema,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        Box::pin(async move {
            check::schema_usable(schema)?;
            let mut sql = String::new();
            for spec in schema.tables {
                let table = spec.table(slot);
                sql += &ddl::drop_table(&table);
                sql += &ddl::create_table(spec, &table);
                if slot == Slot::Live {
                    sql += &ddl::create_indexes(spec, &table);
                }
            }
            let written = async {
                let mut tx = self.write().await?;
                run_ddl(&mut tx, sql).await?;
                let checkpoint = reset(&mut tx, schema, slot, None).await?;
                tx.commit().await.map_err(store_err)?;
                Ok(checkpoint)
            };
            self.inner().health.record(written.await)
        })
    }

    fn drop_rebuild(&self, schema: &'static Schema) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            check::schema_usable(schema)?;
            let sql: String = schema
                .tables
                .iter()
                .map(|spec| ddl::drop_table(&spec.table(Slot::Rebuild)))
                .collect();
            let written = async {
                let mut tx = self.write().await?;
                run_ddl(&mut tx, sql).await?;
                drop_checkpoint(&mut tx, schema.name, Slot::Rebuild).await?;
                tx.commit().await.map_err(store_err)
            };
            self.inner().health.record(written.await)
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
            let inner = self.inner();
            let begun = async {
                let mut tx = self.write().await?;
                let moved = sqlx::query(ADVANCE)
                    .bind(target.name.as_str())
                    .bind(target.slot.name())
                    .bind(target.generation)
                    .bind(int(target.position.0))
                    .bind(int(to.0))
                    .bind(int(events))
                    .bind(owner)
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?
                    .rows_affected();
                Ok((tx, moved == 1))
            };
            match begun.await {
                Err(e) => Err(inner.health.failed(e)),
                Ok((tx, false)) => {
                    // Nothing was written; dropping the transaction rolls back too.
                    let _ = tx.rollback().await;
                    Ok(None)
                }
                Ok((tx, true)) => Ok(Some(Box::new(SqliteApply {
                    tx,
                    schema,
                    slot: target.slot,
                    inner: inner.clone(),
                    statements: self.statements.clone(),
                }) as Box<dyn ApplyTx>)),
            }
        })
    }

    fn build_indexes<'a>(
        &'a self,
        _: &'static Schema,
        _: &'a Target,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        // SQLite cannot rename an index, and index names are shared by all tables: the swap
        // builds them under the live names.
        Box::pin(async { Ok(()) })
    }

    fn swap<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        Box::pin(async move {
            check::schema_usable(schema)?;
            check::copy_of(schema, rebuilt)?;
            let mut sql = String::new();
            for spec in schema.tables {
                let (live, shadow) = (spec.table(Slot::Live), spec.table(Slot::Rebuild));
                sql += &ddl::drop_table(&live);
                sql += &format!("ALTER TABLE {shadow} RENAME TO {live};\n");
                sql += &ddl::create_indexes(spec, &live);
            }
            let written = async {
                let mut tx = self.write().await?;
                let current = read_checkpoint(&mut tx, schema.name, Slot::Rebuild).await?;
                let still = current.as_ref().is_some_and(|c| {
                    c.generation == rebuilt.generation && c.position == rebuilt.position
                });
                let Some(current) = current.filter(|_| still) else {
                    let _ = tx.rollback().await;
                    return Ok(Swapped::Moved);
                };
                run_ddl(&mut tx, sql).await?;
                reset(&mut tx, schema, Slot::Live, Some(&current)).await?;
                drop_checkpoint(&mut tx, schema.name, Slot::Rebuild).await?;
                tx.commit().await.map_err(store_err)?;
                Ok(Swapped::Yes)
            };
            self.inner().health.record(written.await)
        })
    }

    fn snapshot(
        &self,
        schema: &'static Schema,
    ) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        Box::pin(async move {
            check::schema_usable(schema)?;
            // A deferred transaction: its first read fixes the snapshot every later read sees.
            let mut tx = self.inner().reader.begin().await.map_err(store_err)?;
            let checkpoint = read_checkpoint(&mut tx, schema.name, Slot::Live).await?;
            Ok(Box::new(SqliteSnapshot {
                tx,
                schema,
                checkpoint,
            }) as Box<dyn Snapshot>)
        })
    }

    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner().reader.acquire().await.map_err(store_err)?;
            let result = run_query(&mut conn, query).await;
            // A read model never created (its runners never ran) has no rows yet.
            if result.is_err() && query.table.validate().is_ok() {
                let table = query.table.table(query.slot);
                let exists: bool = sqlx::query_scalar(TABLE_EXISTS)
                    .bind(&table)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(store_err)?;
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
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, StoreError>> {
        Box::pin(async { Ok(Some(Box::new(LocalLease) as Box<dyn Lease>)) })
    }

    fn wakeups(&self) -> BoxStream<'static, ()> {
        self.store.inner.wakeups.subscribe()
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }
}

/// The open transaction of one batch on the writer connection (its checkpoint already moved).
struct SqliteApply {
    tx: Transaction<'static, Sqlite>,
    schema: &'static Schema,
    slot: Slot,
    inner: Arc<Inner>,
    statements: Arc<Statements>,
}

impl SqliteApply {
    /// `table`, which must be one of the (validated) schema's tables.
    fn spec(&self, table: &'static TableSpec) -> Result<&'static TableSpec, StoreError> {
        check::table_of(self.schema, table).map(|()| table)
    }

    /// Writes one table's rows (inserts and upserts alike: keys marked new have no row) in
    /// chunks, then deletes its removed keys.
    async fn write_table(&mut self, write: TableWrite) -> Result<(), StoreError> {
        let table = self.spec(write.table)?;
        let count = write.inserts.len() + write.upserts.len();
        let mut pending = write.inserts.into_iter().chain(write.upserts);
        for (carried, size) in rows::chunks(count) {
            let sql = self
                .statements
                .get(table, self.slot, Statement::Upsert(size));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for row in pending.by_ref().take(carried - 1) {
                query = row.into_iter().fold(query, rows::bind);
            }
            // The last row, and copies of it up to the statement's size.
            let last = pending.next().unwrap_or_default();
            for _ in carried..size {
                query = last.iter().cloned().fold(query, rows::bind);
            }
            query = last.into_iter().fold(query, rows::bind);
            query.execute(&mut *self.tx).await.map_err(store_err)?;
        }
        if !write.deletes.is_empty() {
            let sql = self.statements.get(table, self.slot, Statement::Delete);
            sqlx::query(AssertSqlSafe(sql))
                .bind(rows::json_keys(&write.deletes))
                .execute(&mut *self.tx)
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }
}

impl ApplyTx for SqliteApply {
    fn load<'a>(
        &'a mut self,
        table: &'static TableSpec,
        keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        Box::pin(async move {
            let table = self.spec(table)?;
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let sql = self.statements.get(table, self.slot, Statement::Load);
            sqlx::query(AssertSqlSafe(sql))
                .bind(rows::json_keys(keys))
                .try_map(|row| rows::decode(table, &row))
                .fetch_all(&mut *self.tx)
                .await
                .map_err(|e| self.inner.health.failed(store_err(e)))
        })
    }

    fn write(&mut self, writes: Vec<TableWrite>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for write in writes {
                if write.is_empty() {
                    continue;
                }
                if let Err(e) = self.write_table(write).await {
                    return Err(self.inner.health.failed(e));
                }
            }
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        let Self { tx, inner, .. } = *self;
        Box::pin(async move { inner.health.record(tx.commit().await.map_err(store_err)) })
    }
}

/// A read transaction over a read model's live tables.
struct SqliteSnapshot {
    tx: Transaction<'static, Sqlite>,
    schema: &'static Schema,
    checkpoint: Option<Checkpoint>,
}

impl Snapshot for SqliteSnapshot {
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
