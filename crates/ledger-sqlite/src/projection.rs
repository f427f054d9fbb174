//! The projections' tables, checkpoints and queries in the SQLite file
//! ([`ledger_projections::ProjectionStore`]).
//!
//! A batch is one `BEGIN IMMEDIATE` transaction on the writer connection: the conditional
//! checkpoint update, then one `SELECT` of the rows the batch touches per table, the pure fold,
//! and one `INSERT ... ON CONFLICT DO UPDATE` per table fed by a JSON array of rows. SQLite has
//! one writer at a time, so positions follow commit order and checkpoints compare as numbers.
//! Runners are woken by the appends of this process and, through `PRAGMA data_version`
//! (`crate::wakeup`), of other processes; they poll as well.

use std::time::Duration;

use chrono::Utc;
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, Position, StoreError};
use ledger_projections::rows::time_text;
use ledger_projections::{
    Batch, Checkpoint, Decoded, Filter, Kind, Lease, LocalLease, LogPage, ProjectionStore, Query,
    RowKey, Rows, Slot, Snapshot, Swapped, Target, definition_parts, fold,
};
use sqlx::query::Query as SqlxQuery;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection, Transaction};

use crate::error::store_err;
use crate::health::WriteHealth;
use crate::store::SqliteStore;

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

/// A page of the log for the projections: only `tenant-*` payloads are read.
const READ_LOG: &str = "SELECT stream, seq, position, event_type, \
     CASE WHEN substr(stream, 1, 7) = 'tenant-' THEN data END \
     FROM events WHERE position > ?1 ORDER BY position LIMIT ?2";

/// The events after a position (positions follow commit order).
const EVENTS_AFTER: &str = "SELECT count(*) FROM events WHERE position > ?1";

/// The table definitions of `projections/sqlite`.
fn definition(kind: Kind) -> &'static str {
    match kind {
        Kind::TenantPhase => include_str!("../../../projections/sqlite/tenant_phase.sql"),
        Kind::OnboardingLocks => include_str!("../../../projections/sqlite/onboarding_locks.sql"),
        Kind::PendingSyncs => include_str!("../../../projections/sqlite/pending_syncs.sql"),
    }
}

/// Each projection's columns in table order (the rows' JSON field names) and key columns.
fn columns(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        Kind::TenantPhase => (
            &[
                "tenant_id",
                "slug",
                "name",
                "phase",
                "verifying_payment_at",
                "creating_organization_at",
                "setting_up_workspace_at",
                "generating_api_key_at",
                "finalizing_at",
                "completed_at",
                "last_seq",
                "updated_at",
            ],
            &["tenant_id"],
        ),
        Kind::OnboardingLocks => (
            &[
                "tenant_id",
                "holder",
                "acquired_at",
                "expires_at",
                "released_at",
                "release_reason",
            ],
            &["tenant_id"],
        ),
        Kind::PendingSyncs => (
            &[
                "tenant_id",
                "target",
                "status",
                "attempts",
                "retry_count",
                "last_error",
                "first_failed_at",
                "updated_at",
            ],
            &["tenant_id", "target"],
        ),
    }
}

/// The upsert of a JSON array of rows (`?1`) into `table`.
fn upsert_sql(kind: Kind, table: &str) -> String {
    let (cols, key) = columns(kind);
    let values: Vec<String> = cols.iter().map(|c| format!("value ->> '{c}'")).collect();
    let updates: Vec<String> = cols
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({names}) SELECT {values} FROM json_each(?1) WHERE true \
         ON CONFLICT ({key}) DO UPDATE SET {updates}",
        names = cols.join(", "),
        values = values.join(", "),
        key = key.join(", "),
        updates = updates.join(", "),
    )
}

/// A row as a JSON object text.
fn json_object(kind: Kind) -> String {
    let (cols, _) = columns(kind);
    let pairs: Vec<String> = cols.iter().map(|c| format!("'{c}', {c}")).collect();
    format!("json_object({})", pairs.join(", "))
}

/// The rows of the tenants in `?1` (a JSON array of ids).
fn load_sql(kind: Kind, table: &str) -> String {
    format!(
        "SELECT {} FROM {table} WHERE tenant_id IN (SELECT value FROM json_each(?1))",
        json_object(kind)
    )
}

/// A page query; parameters are numbered in the order [`bind_query`] binds them.
fn query_sql(query: &Query) -> String {
    let (_, key) = columns(query.kind);
    let table = query.kind.table(query.slot);
    let mut sql = format!("SELECT {} FROM {table} WHERE true", json_object(query.kind));
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("?{n}")
    };
    if query.tenant.is_some() {
        sql += &format!(" AND tenant_id = {}", param());
    }
    match query.filter {
        Filter::All => {}
        Filter::Phase(_) => sql += &format!(" AND phase = {}", param()),
        Filter::Status(_) => sql += &format!(" AND status = {}", param()),
        Filter::ActiveAt(_) => {
            sql += &format!(" AND released_at IS NULL AND expires_at > {}", param())
        }
    }
    if query.after.is_some() {
        if key.len() == 2 {
            let (a, b) = (param(), param());
            sql += &format!(" AND (tenant_id, target) > ({a}, {b})");
        } else {
            sql += &format!(" AND tenant_id > {}", param());
        }
    }
    sql += &format!(" ORDER BY {} LIMIT {}", key.join(", "), param());
    sql
}

/// Binds a page query's parameters in the order [`query_sql`] numbers them.
fn bind_query<'q>(
    mut q: SqlxQuery<'q, Sqlite, SqliteArguments>,
    query: &'q Query,
) -> SqlxQuery<'q, Sqlite, SqliteArguments> {
    if let Some(t) = &query.tenant {
        q = q.bind(t.as_str());
    }
    match &query.filter {
        Filter::All => {}
        Filter::Phase(p) => q = q.bind(p.to_string()),
        Filter::Status(s) => {
            q = q.bind(
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            )
        }
        Filter::ActiveAt(now) => q = q.bind(time_text::format(now)),
    }
    if let Some(after) = &query.after {
        q = q.bind(after.tenant_id.as_str());
        if columns(query.kind).1.len() == 2 {
            q = q.bind(after.target.clone().unwrap_or_default());
        }
    }
    q.bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
}

/// Rows from JSON object texts.
fn rows_of(kind: Kind, texts: Vec<String>) -> Result<Rows, StoreError> {
    texts
        .iter()
        .map(|t| serde_json::from_str(t))
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .and_then(|v| Rows::from_json(kind, v))
        .map_err(|e| StoreError::backend_with(format!("a {kind} row does not decode"), e))
}

/// A checkpoint row.
type CheckpointRow = (String, String, i64, i64, i64, i64, Option<String>, String);

/// Decodes a checkpoint row (`None` for a name or slot this code does not know).
fn checkpoint_of(row: CheckpointRow) -> Option<Checkpoint> {
    let (name, slot, version, generation, position, events, owner, updated_at) = row;
    Some(Checkpoint {
        kind: name.parse().ok()?,
        slot: Slot::parse(&slot)?,
        version: u32::try_from(version).ok()?,
        generation,
        position: Position(u64::try_from(position).ok()?),
        events: u64::try_from(events).ok()?,
        owner,
        updated_at: time_text::parse(&updated_at).ok()?,
    })
}

/// A fresh generation number.
fn new_generation() -> i64 {
    let (_, low) = uuid::Uuid::now_v7().as_u64_pair();
    (low >> 1) as i64
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now() -> String {
    time_text::format(&Utc::now())
}

/// The projections of a SQLite ledger.
#[derive(Clone)]
pub struct SqliteProjections {
    store: SqliteStore,
}

impl SqliteStore {
    /// The projections kept in this store's file (same writer and reader connections).
    pub fn projections(&self) -> SqliteProjections {
        SqliteProjections {
            store: self.clone(),
        }
    }
}

/// Reads one checkpoint on a connection.
async fn read_checkpoint(
    conn: &mut SqliteConnection,
    kind: Kind,
    slot: Slot,
) -> Result<Option<Checkpoint>, StoreError> {
    let row: Option<CheckpointRow> = sqlx::query_as(CHECKPOINT)
        .bind(kind.name())
        .bind(slot.name())
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_err)?;
    Ok(row.and_then(checkpoint_of))
}

/// Creates or resets a checkpoint.
async fn reset(
    conn: &mut SqliteConnection,
    kind: Kind,
    slot: Slot,
    from: Option<&Checkpoint>,
) -> Result<Checkpoint, StoreError> {
    let row: CheckpointRow = sqlx::query_as(RESET)
        .bind(kind.name())
        .bind(slot.name())
        .bind(i64::from(from.map_or(kind.version(), |c| c.version)))
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
    kind: Kind,
    slot: Slot,
) -> Result<(), StoreError> {
    sqlx::query(DELETE_CHECKPOINT)
        .bind(kind.name())
        .bind(slot.name())
        .execute(&mut *conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Loads, folds and writes back the rows of one target for a batch.
async fn apply_rows(
    conn: &mut SqliteConnection,
    target: &Target,
    batch: &Batch,
) -> Result<(), StoreError> {
    let table = target.kind.table(target.slot);
    let ids = batch.tenant_ids(target.kind);
    let loaded = if ids.is_empty() {
        Rows::empty(target.kind)
    } else {
        let ids = serde_json::to_string(&ids).expect("ids serialize");
        let texts: Vec<String> = sqlx::query_scalar(AssertSqlSafe(load_sql(target.kind, table)))
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(store_err)?;
        rows_of(target.kind, texts)?
    };
    let changed = fold(target.kind, loaded, batch);
    if changed.is_empty() {
        return Ok(());
    }
    sqlx::query(AssertSqlSafe(upsert_sql(target.kind, table)))
        .bind(changed.to_json_array())
        .execute(&mut *conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Runs a page query on a connection.
async fn run_query(conn: &mut SqliteConnection, query: &Query) -> Result<Rows, StoreError> {
    let sql = query_sql(query);
    let texts: Vec<String> = bind_query(sqlx::query(AssertSqlSafe(sql)), query)
        .try_map(|row: SqliteRow| row.try_get::<String, _>(0))
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
    rows_of(query.kind, texts)
}

impl SqliteProjections {
    /// The health of the writer every projection write goes through.
    fn health(&self) -> &WriteHealth {
        &self.store.inner.health
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.store
            .inner
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_err)
    }
}

/// Decodes a row of [`READ_LOG`].
fn decoded(row: &SqliteRow) -> Result<Decoded, sqlx::Error> {
    let stream: &str = row.try_get(0)?;
    let seq: i64 = row.try_get(1)?;
    let position: i64 = row.try_get(2)?;
    let event_type: &str = row.try_get(3)?;
    let data: Option<&str> = row.try_get(4)?;
    Ok(Decoded::from_parts(
        Position(position as u64),
        stream,
        seq as u64,
        event_type,
        data,
    ))
}

impl ProjectionStore for SqliteProjections {
    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'_, Result<LogPage, StoreError>> {
        Box::pin(async move {
            let events = sqlx::query(READ_LOG)
                .bind(int(after.0))
                .bind(int(limit as u64))
                .try_map(|row: SqliteRow| decoded(&row))
                .fetch_all(&self.store.inner.reader)
                .await
                .map_err(store_err)?;
            // One writer at a time: what is committed is final, in position order.
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
        Box::pin(async move {
            let rows: Vec<CheckpointRow> = sqlx::query_as(CHECKPOINTS)
                .fetch_all(&self.store.inner.reader)
                .await
                .map_err(store_err)?;
            Ok(rows.into_iter().filter_map(checkpoint_of).collect())
        })
    }

    fn checkpoint(
        &self,
        kind: Kind,
        slot: Slot,
    ) -> BoxFuture<'_, Result<Option<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.store.inner.reader.acquire().await.map_err(store_err)?;
            read_checkpoint(&mut conn, kind, slot).await
        })
    }

    fn create(&self, kind: Kind, slot: Slot) -> BoxFuture<'_, Result<Checkpoint, StoreError>> {
        Box::pin(async move {
            let table = kind.table(slot);
            let (create, indexes) = definition_parts(definition(kind), table);
            let mut ddl = format!("DROP TABLE IF EXISTS {table};\n{create}");
            if slot == Slot::Live {
                ddl += &indexes;
            }
            let written = async {
                let mut tx = self.write().await?;
                sqlx::raw_sql(AssertSqlSafe(ddl))
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?;
                let checkpoint = reset(&mut tx, kind, slot, None).await?;
                tx.commit().await.map_err(store_err)?;
                Ok(checkpoint)
            };
            self.health().record(written.await)
        })
    }

    fn drop_rebuild(&self, kind: Kind) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let written = async {
                let mut tx = self.write().await?;
                let ddl = format!("DROP TABLE IF EXISTS {}", kind.table(Slot::Rebuild));
                sqlx::raw_sql(AssertSqlSafe(ddl))
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?;
                drop_checkpoint(&mut tx, kind, Slot::Rebuild).await?;
                tx.commit().await.map_err(store_err)
            };
            self.health().record(written.await)
        })
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
            let written = async {
                let mut tx = self.write().await?;
                let moved = sqlx::query(ADVANCE)
                    .bind(target.kind.name())
                    .bind(target.slot.name())
                    .bind(target.generation)
                    .bind(int(target.position.0))
                    .bind(int(last.0))
                    .bind(int(batch.len()))
                    .bind(owner)
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?
                    .rows_affected();
                if moved != 1 {
                    // Nothing was written; dropping the transaction rolls back too.
                    let _ = tx.rollback().await;
                    return Ok(false);
                }
                apply_rows(&mut tx, target, batch).await?;
                tx.commit().await.map_err(store_err)?;
                Ok(true)
            };
            self.health().record(written.await)
        })
    }

    fn build_indexes<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, Result<(), StoreError>> {
        // SQLite cannot rename an index, and index names are shared by all tables: the swap
        // builds them under the live names.
        Box::pin(async { Ok(()) })
    }

    fn swap<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        Box::pin(async move {
            let kind = rebuilt.kind;
            let written = async {
                let mut tx = self.write().await?;
                let current = read_checkpoint(&mut tx, kind, Slot::Rebuild).await?;
                let still = current.as_ref().is_some_and(|c| {
                    c.generation == rebuilt.generation && c.position == rebuilt.position
                });
                let Some(current) = current.filter(|_| still) else {
                    let _ = tx.rollback().await;
                    return Ok(Swapped::Moved);
                };
                let (live, shadow) = (kind.table(Slot::Live), kind.table(Slot::Rebuild));
                let (_, indexes) = definition_parts(definition(kind), live);
                let ddl = format!(
                    "DROP TABLE IF EXISTS {live};\n\
                 ALTER TABLE {shadow} RENAME TO {live};\n\
                 {indexes}"
                );
                sqlx::raw_sql(AssertSqlSafe(ddl))
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?;
                reset(&mut tx, kind, Slot::Live, Some(&current)).await?;
                drop_checkpoint(&mut tx, kind, Slot::Rebuild).await?;
                tx.commit().await.map_err(store_err)?;
                Ok(Swapped::Yes)
            };
            self.health().record(written.await)
        })
    }

    fn snapshot(&self, kind: Kind) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        Box::pin(async move {
            // A deferred transaction: its first read fixes the snapshot every later read sees.
            let mut tx = self.store.inner.reader.begin().await.map_err(store_err)?;
            let checkpoint = read_checkpoint(&mut tx, kind, Slot::Live).await?;
            Ok(Box::new(SqliteSnapshot {
                tx,
                kind,
                checkpoint,
            }) as Box<dyn Snapshot>)
        })
    }

    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Rows, StoreError>> {
        Box::pin(async move {
            let mut conn = self.store.inner.reader.acquire().await.map_err(store_err)?;
            run_query(&mut conn, query).await
        })
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
            let n: i64 = sqlx::query_scalar(EVENTS_AFTER)
                .bind(int(position.0))
                .fetch_one(&self.store.inner.reader)
                .await
                .map_err(store_err)?;
            Ok(n.max(0) as u64)
        })
    }

    fn lease(&self, _kind: Kind) -> BoxFuture<'_, Result<Option<Box<dyn Lease>>, StoreError>> {
        Box::pin(async { Ok(Some(Box::new(LocalLease) as Box<dyn Lease>)) })
    }

    fn wakeups(&self) -> BoxStream<'static, ()> {
        self.store.inner.wakeups.subscribe()
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }
}

/// A read transaction over a live table.
struct SqliteSnapshot {
    tx: Transaction<'static, Sqlite>,
    kind: Kind,
    checkpoint: Option<Checkpoint>,
}

impl Snapshot for SqliteSnapshot {
    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn rows(
        &mut self,
        after: Option<RowKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Rows, StoreError>> {
        Box::pin(async move {
            if self.checkpoint.is_none() {
                return Ok(Rows::empty(self.kind));
            }
            let query = Query::page(self.kind, Slot::Live, after, limit);
            run_query(&mut self.tx, &query).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_built_from_the_column_lists() {
        let sql = upsert_sql(Kind::OnboardingLocks, "onboarding_locks");
        assert!(sql.starts_with("INSERT INTO onboarding_locks (tenant_id, holder,"));
        assert!(sql.contains("SELECT value ->> 'tenant_id', value ->> 'holder'"));
        assert!(sql.contains("ON CONFLICT (tenant_id) DO UPDATE SET holder = excluded.holder"));
        let q = Query {
            kind: Kind::TenantPhase,
            slot: Slot::Rebuild,
            tenant: None,
            filter: Filter::All,
            after: Some(RowKey::tenant("t")),
            limit: 5,
        };
        let sql = query_sql(&q);
        assert!(sql.starts_with("SELECT json_object('tenant_id', tenant_id,"));
        assert!(sql.ends_with(
            "FROM tenant_phase_rebuild WHERE true AND tenant_id > ?1 ORDER BY tenant_id LIMIT ?2"
        ));
    }
}
