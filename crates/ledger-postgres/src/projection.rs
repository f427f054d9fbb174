//! The projections' tables, checkpoints, leases and queries on PostgreSQL
//! ([`ledger_projections::ProjectionStore`]).
//!
//! A batch is one transaction: the conditional checkpoint update first (it locks the checkpoint
//! row, so concurrent appliers and swaps queue behind it), then one `SELECT` of the rows the
//! batch touches per table, the pure fold, and one statement writing the rows, fed by typed
//! arrays: a plain `INSERT` of the rows of tenants new to the copy (a replay into an empty
//! copy) and an `INSERT ... ON CONFLICT DO UPDATE` of the others. Checkpoints are positions
//! compared in the log's read order `(tx_id, position)`, never as numbers. One runner per
//! projection holds a session advisory lock; new events wake runners through
//! `LISTEN ledger_events` (writing processes notify after their commits: `crate::wakeup`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, Position, StoreError};
use ledger_projections::rows::Column;
use ledger_projections::{
    Batch, Checkpoint, Decoded, Filter, Kind, Lease, LogPage, ProjectionStore, Query, RowKey, Rows,
    Slot, Snapshot, Swapped, Target, definition_parts, fold, index_names,
};
use sqlx::postgres::{PgArguments, PgListener, PgRow};
use sqlx::query::Query as SqlxQuery;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Row, Transaction};
use tokio::sync::watch;

use crate::error::from_sqlx;
use crate::read::BEGIN_IN_LOG_ORDER;
use crate::store::PgStore;
use crate::tx::{begin, commit, end_read_only};
use crate::wakeup::CHANNEL;

/// How often a caught-up runner polls when no notification came.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a lease check may take before the lease counts as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Advisory lock keys of the projection leases: this base plus the projection's index.
const LEASE_KEY_BASE: i64 = 0x4c65_6467_5072_6a00;

/// One checkpoint.
const CHECKPOINT: &str = "SELECT name, slot, version, generation, position, events, owner, \
     updated_at FROM projection_checkpoints WHERE name = $1 AND slot = $2";

/// Every checkpoint.
const CHECKPOINTS: &str = "SELECT name, slot, version, generation, position, events, owner, \
     updated_at FROM projection_checkpoints ORDER BY name, slot";

/// Opens a batch's transaction. Projections are derived data: the commit need not wait for the
/// WAL flush. A crash may lose the last batches, rows and checkpoint together, and the runner
/// applies them again; the events themselves are committed durably by their writers.
const BEGIN_APPLY: &str = "BEGIN; SET LOCAL synchronous_commit = off";

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

/// Whether the reader at checkpoint `$1` has read the event at `$2`, in `(tx_id, position)`
/// order.
const COVERS: &str = "SELECT EXISTS (SELECT 1 FROM events p, events c \
     WHERE p.position = $2 AND c.position = $1 \
     AND (p.tx_id, p.position) <= (c.tx_id, c.position))";

/// The writing transaction of the cursor's event (`$1`; none for position 0) and the oldest
/// transaction still running: rows of transactions below it are final.
const CURSOR_AND_HORIZON: &str = "SELECT (SELECT tx_id::text::bigint FROM events WHERE position = $1), \
     pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// The first transaction id not yet assigned: once the horizon reaches it, every transaction
/// running now has ended.
const SNAPSHOT_XMAX: &str = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint";

/// A page of the log for the projections, after the cursor (`$1` tx, `$2` position), below the
/// horizon `$3`, at most `$4` events, in `(tx_id, position)` order; only `tenant-*` payloads.
const READ_LOG: &str = "SELECT stream, seq, position, event_type, \
     CASE WHEN starts_with(stream, 'tenant-') THEN data::text END FROM events \
     WHERE (tx_id, position) > ($1::bigint::text::xid8, $2::bigint) \
       AND tx_id < $3::bigint::text::xid8 \
     ORDER BY tx_id, position LIMIT $4";

/// The events after position `$1` in read order.
const EVENTS_AFTER: &str = "SELECT count(*) FROM events \
     WHERE (tx_id, position) > (SELECT tx_id, position FROM events WHERE position = $1)";

/// Every event.
const EVENTS: &str = "SELECT count(*) FROM events";

/// Opens the transaction a verification reads the live table in.
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// Takes a lease if free.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";

/// The table definitions of `projections/postgres`.
fn definition(kind: Kind) -> &'static str {
    match kind {
        Kind::TenantPhase => include_str!("../../../projections/postgres/tenant_phase.sql"),
        Kind::OnboardingLocks => include_str!("../../../projections/postgres/onboarding_locks.sql"),
        Kind::PendingSyncs => include_str!("../../../projections/postgres/pending_syncs.sql"),
    }
}

/// Each projection's key columns.
fn key(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::TenantPhase | Kind::OnboardingLocks => &["tenant_id"],
        Kind::PendingSyncs => &["tenant_id", "target"],
    }
}

/// Index statements made idempotent.
fn if_not_exists(indexes: &str) -> String {
    indexes
        .replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ")
        .replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ")
}

/// The rows of the tenants in `$1` (a text array), as JSON text.
fn load_sql(table: &str) -> String {
    format!("SELECT row_to_json(t)::text FROM {table} t WHERE tenant_id = ANY($1::text[])")
}

/// A page query and its parameters in bind order.
fn query_sql(query: &Query) -> String {
    let key = key(query.kind);
    let table = query.kind.table(query.slot);
    let mut sql = format!("SELECT row_to_json(t)::text FROM {table} t WHERE true");
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if query.tenant.is_some() {
        sql += &format!(" AND tenant_id = {}", param());
    }
    match query.filter {
        Filter::All => {}
        Filter::Phase(_) => sql += &format!(" AND phase = {}", param()),
        Filter::Status(_) => sql += &format!(" AND status = {}", param()),
        Filter::ActiveAt(_) => {
            sql += &format!(
                " AND released_at IS NULL AND expires_at > {}::timestamptz",
                param()
            )
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
    mut q: SqlxQuery<'q, Postgres, PgArguments>,
    query: &'q Query,
) -> SqlxQuery<'q, Postgres, PgArguments> {
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
        Filter::ActiveAt(now) => q = q.bind(*now),
    }
    if let Some(after) = &query.after {
        q = q.bind(after.tenant_id.as_str());
        if key(query.kind).len() == 2 {
            q = q.bind(after.target.clone().unwrap_or_default());
        }
    }
    q.bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
}

/// Rows from the JSON texts of a `row_to_json` query.
fn rows_of(kind: Kind, texts: Vec<String>) -> Result<Rows, StoreError> {
    let values = texts
        .iter()
        .map(|t| serde_json::from_str(t))
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .and_then(|v| Rows::from_json(kind, v))
        .map_err(|e| StoreError::backend_with(format!("a {kind} row does not decode"), e))?;
    Ok(values)
}

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
        updated_at,
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

/// The projections of a PostgreSQL ledger.
#[derive(Clone)]
pub struct PgProjections {
    pool: PgPool,
    wake: Arc<OnceLock<watch::Sender<u64>>>,
}

impl PgStore {
    /// The projections kept in this store's database (same connection pool).
    pub fn projections(&self) -> PgProjections {
        PgProjections {
            pool: self.pool.clone(),
            wake: Arc::default(),
        }
    }
}

/// Reads one checkpoint inside a transaction or on a connection.
async fn read_checkpoint(
    conn: &mut PgConnection,
    sql: &'static str,
    kind: Kind,
    slot: Slot,
) -> Result<Option<Checkpoint>, StoreError> {
    let row: Option<CheckpointRow> = sqlx::query_as(sql)
        .bind(kind.name())
        .bind(slot.name())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(row.and_then(checkpoint_of))
}

/// Loads and folds the rows of one target for a batch; returns the rows to write.
async fn fold_rows(
    tx: &mut PgConnection,
    target: &Target,
    batch: &Batch,
) -> Result<Rows, StoreError> {
    let ids = batch.tenant_ids(target.kind);
    let loaded = if ids.is_empty() {
        Rows::empty(target.kind)
    } else {
        let texts: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(load_sql(target.kind.table(target.slot))))
                .bind(&ids)
                .persistent(false)
                .fetch_all(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        rows_of(target.kind, texts)?
    };
    Ok(fold(target.kind, loaded, batch))
}

/// Rows to write to a copy: inserted plainly when they are known to be new (a replay into an
/// empty copy), else upserted.
struct Write {
    rows: Rows,
    new: bool,
}

/// Writes the changed rows of one copy in one statement (one data-modifying CTE per write),
/// each write's rows bound as typed arrays, one per column.
async fn write_all(
    tx: &mut PgConnection,
    target: &Target,
    writes: &[Write],
) -> Result<(), StoreError> {
    let changed: Vec<(&Write, Vec<(&'static str, Column)>)> = writes
        .iter()
        .filter(|w| !w.rows.is_empty())
        .map(|w| (w, w.rows.columns()))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let mut statements = Vec::new();
    let mut n = 0;
    for (w, cols) in &changed {
        let key = key(target.kind);
        let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
        let params: Vec<String> = cols
            .iter()
            .map(|(_, col)| {
                n += 1;
                let ty = match col {
                    Column::Text(_) => "text[]",
                    Column::Time(_) => "timestamptz[]",
                    Column::Int(_) => "bigint[]",
                };
                format!("unnest(${n}::{ty})")
            })
            .collect();
        // `unnest` per column in the select list zips the arrays row by row, without the
        // materialization `FROM unnest(a, b, ..)` does.
        let mut statement = format!(
            "INSERT INTO {table} ({names}) SELECT {params}",
            table = target.kind.table(target.slot),
            names = names.join(", "),
            params = params.join(", "),
        );
        if !w.new {
            let updates: Vec<String> = names
                .iter()
                .filter(|c| !key.contains(c))
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            statement += &format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                key.join(", "),
                updates.join(", ")
            );
        }
        statements.push(statement);
    }
    let last = statements.pop().expect("at least one write has rows");
    let mut sql = String::new();
    for (i, s) in statements.iter().enumerate() {
        sql += &format!("{}w{i} AS ({s}) ", if i == 0 { "WITH " } else { ", " });
    }
    sql += &last;
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (_, cols) in changed {
        for (_, col) in cols {
            query = match col {
                Column::Text(v) => query.bind(v),
                Column::Time(v) => query.bind(v),
                Column::Int(v) => query.bind(v),
            };
        }
    }
    query.execute(&mut *tx).await.map_err(from_sqlx)?;
    Ok(())
}

/// Decodes a row of [`READ_LOG`].
/// The column types are those of the statement (text, bigint, bigint, text, text), so the
/// per-value type check of `try_get` is skipped; the values are still decoded and validated.
fn decoded(row: &PgRow) -> Result<Decoded, sqlx::Error> {
    let stream: &str = row.try_get_unchecked(0)?;
    let seq: i64 = row.try_get_unchecked(1)?;
    let position: i64 = row.try_get_unchecked(2)?;
    let event_type: &str = row.try_get_unchecked(3)?;
    let data: Option<&str> = row.try_get_unchecked(4)?;
    Ok(Decoded::from_parts(
        Position(position as u64),
        stream,
        seq as u64,
        event_type,
        data,
    ))
}

impl ProjectionStore for PgProjections {
    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'_, Result<LogPage, StoreError>> {
        Box::pin(async move {
            let mut conn = begin(&self.pool, Some(BEGIN_IN_LOG_ORDER)).await?;
            let (tx, horizon): (Option<i64>, i64) = sqlx::query_as(CURSOR_AND_HORIZON)
                .bind(int(after.0))
                .fetch_one(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            let tx = match (tx, after) {
                (Some(tx), _) => tx,
                (None, Position::START) => 0,
                (None, _) => return Err(StoreError::UnknownPosition(after.0)),
            };
            let events = sqlx::query(READ_LOG)
                .bind(tx)
                .bind(int(after.0))
                .bind(horizon)
                .bind(int(limit as u64))
                .try_map(|row: PgRow| decoded(&row))
                .fetch_all(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            end_read_only(conn);
            Ok(LogPage {
                events,
                horizon: horizon.max(0) as u64,
            })
        })
    }

    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mark: i64 = sqlx::query_scalar(SNAPSHOT_XMAX)
                .fetch_one(&self.pool)
                .await
                .map_err(from_sqlx)?;
            Ok(mark.max(0) as u64)
        })
    }

    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<CheckpointRow> = sqlx::query_as(CHECKPOINTS)
                .fetch_all(&self.pool)
                .await
                .map_err(from_sqlx)?;
            Ok(rows.into_iter().filter_map(checkpoint_of).collect())
        })
    }

    fn checkpoint(
        &self,
        kind: Kind,
        slot: Slot,
    ) -> BoxFuture<'_, Result<Option<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            read_checkpoint(&mut conn, CHECKPOINT, kind, slot).await
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
            let mut tx = begin(&self.pool, None).await?;
            sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            let row: CheckpointRow = sqlx::query_as(RESET)
                .bind(kind.name())
                .bind(slot.name())
                .bind(kind.version() as i32)
                .bind(new_generation())
                .bind(0i64)
                .bind(0i64)
                .bind(None::<String>)
                .fetch_one(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            commit(tx).await?;
            checkpoint_of(row).ok_or_else(|| StoreError::backend("a checkpoint does not decode"))
        })
    }

    fn drop_rebuild(&self, kind: Kind) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = begin(&self.pool, None).await?;
            let ddl = format!("DROP TABLE IF EXISTS {}", kind.table(Slot::Rebuild));
            sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            sqlx::query(DELETE_CHECKPOINT)
                .bind(kind.name())
                .bind(Slot::Rebuild.name())
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            commit(tx).await
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
            let mut tx = begin(&self.pool, Some(BEGIN_APPLY)).await?;
            let moved = sqlx::query(ADVANCE)
                .bind(target.kind.name())
                .bind(target.slot.name())
                .bind(target.generation)
                .bind(int(target.position.0))
                .bind(int(last.0))
                .bind(int(batch.len()))
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?
                .rows_affected();
            if moved != 1 {
                // Nothing was written; dropping the transaction rolls it back.
                drop(tx);
                return Ok(false);
            }
            let (new, rest) = fold_rows(&mut tx, target, batch)
                .await?
                .partition(|tenant| batch.is_new(tenant));
            let writes = [
                Write {
                    rows: new,
                    new: true,
                },
                Write {
                    rows: rest,
                    new: false,
                },
            ];
            write_all(&mut tx, target, &writes).await?;
            commit(tx).await?;
            Ok(true)
        })
    }

    fn build_indexes<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (_, indexes) =
                definition_parts(definition(rebuilt.kind), rebuilt.kind.table(Slot::Rebuild));
            // The copies of a rebuild build their indexes at the same time: one worker each.
            let ddl = format!(
                "SET LOCAL max_parallel_maintenance_workers = 0;\n{}",
                if_not_exists(&indexes)
            );
            let mut tx = begin(&self.pool, None).await?;
            sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            commit(tx).await
        })
    }

    fn swap<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        Box::pin(async move {
            let kind = rebuilt.kind;
            let mut tx = begin(&self.pool, None).await?;
            let current = read_checkpoint(&mut tx, LOCK_CHECKPOINT, kind, Slot::Rebuild).await?;
            let still = current.as_ref().is_some_and(|c| {
                c.generation == rebuilt.generation && c.position == rebuilt.position
            });
            let Some(current) = current.filter(|_| still) else {
                drop(tx);
                return Ok(Swapped::Moved);
            };
            // Queue behind any batch being applied to the live copy.
            read_checkpoint(&mut tx, LOCK_CHECKPOINT, kind, Slot::Live).await?;
            let (live, shadow) = (kind.table(Slot::Live), kind.table(Slot::Rebuild));
            let (_, indexes) = definition_parts(definition(kind), live);
            let (_, built) = definition_parts(definition(kind), shadow);
            let mut ddl = format!(
                "DROP TABLE IF EXISTS {live};\n\
                 ALTER TABLE {shadow} RENAME TO {live};\n\
                 ALTER TABLE {live} RENAME CONSTRAINT {shadow}_pkey TO {live}_pkey;\n"
            );
            // Indexes built ahead keep their work; the others are built now.
            for (from, to) in index_names(&built).iter().zip(index_names(&indexes)) {
                ddl += &format!("ALTER INDEX IF EXISTS {from} RENAME TO {to};\n");
            }
            ddl += &if_not_exists(&indexes);
            sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            sqlx::query(RESET)
                .bind(kind.name())
                .bind(Slot::Live.name())
                .bind(current.version as i32)
                .bind(new_generation())
                .bind(int(current.position.0))
                .bind(int(current.events))
                .bind(current.owner.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            sqlx::query(DELETE_CHECKPOINT)
                .bind(kind.name())
                .bind(Slot::Rebuild.name())
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            commit(tx).await?;
            Ok(Swapped::Yes)
        })
    }

    fn snapshot(&self, kind: Kind) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        Box::pin(async move {
            let mut tx = begin(&self.pool, Some(BEGIN_SNAPSHOT)).await?;
            let checkpoint = read_checkpoint(&mut tx, CHECKPOINT, kind, Slot::Live).await?;
            Ok(Box::new(PgSnapshot {
                tx,
                kind,
                checkpoint,
            }) as Box<dyn Snapshot>)
        })
    }

    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Rows, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            run_query(&mut conn, query).await
        })
    }

    fn covers(
        &self,
        checkpoint: Position,
        position: Position,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            if checkpoint == Position::START || position == Position::START {
                return Ok(false);
            }
            if checkpoint == position {
                return Ok(true);
            }
            sqlx::query_scalar(COVERS)
                .bind(int(checkpoint.0))
                .bind(int(position.0))
                .fetch_one(&self.pool)
                .await
                .map_err(from_sqlx)
        })
    }

    fn events_after(&self, position: Position) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let n: i64 = if position == Position::START {
                sqlx::query_scalar(EVENTS).fetch_one(&self.pool).await
            } else {
                sqlx::query_scalar(EVENTS_AFTER)
                    .bind(int(position.0))
                    .fetch_one(&self.pool)
                    .await
            }
            .map_err(from_sqlx)?;
            Ok(n.max(0) as u64)
        })
    }

    fn lease(&self, kind: Kind) -> BoxFuture<'_, Result<Option<Box<dyn Lease>>, StoreError>> {
        Box::pin(async move {
            let index = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as i64;
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            let got: bool = sqlx::query_scalar(TRY_LOCK)
                .bind(LEASE_KEY_BASE + index)
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

/// Runs a page query on a connection.
async fn run_query(conn: &mut PgConnection, query: &Query) -> Result<Rows, StoreError> {
    let sql = query_sql(query);
    let texts: Vec<String> = bind_query(sqlx::query(AssertSqlSafe(sql)), query)
        .persistent(false)
        .try_map(|row: PgRow| row.try_get::<String, _>(0))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    rows_of(query.kind, texts)
}

/// A projection lease: a session advisory lock held on its own connection.
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

/// A repeatable-read, read-only transaction over a live table.
struct PgSnapshot {
    tx: Transaction<'static, Postgres>,
    kind: Kind,
    checkpoint: Option<Checkpoint>,
}

impl Snapshot for PgSnapshot {
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
    use ledger_domain::Phase;

    use super::*;

    #[test]
    fn statements_are_built_from_the_column_lists() {
        let q = Query {
            kind: Kind::PendingSyncs,
            slot: Slot::Live,
            tenant: Some("t".into()),
            filter: Filter::Phase(Phase::Completed),
            after: Some(RowKey::target("t", "crm")),
            limit: 5,
        };
        assert_eq!(
            query_sql(&q),
            "SELECT row_to_json(t)::text FROM pending_syncs t WHERE true AND tenant_id = $1 \
             AND phase = $2 AND (tenant_id, target) > ($3, $4) ORDER BY tenant_id, target LIMIT $5"
        );
    }
}
