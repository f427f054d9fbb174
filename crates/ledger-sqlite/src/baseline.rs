//! The plain SQL `ledger bench` measures the store against: same database, same connections,
//! no ledger logic.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ledger_core::{Baseline, BaselineLookup, BenchRow, BoxFuture, StoreError};
use sqlx::{AssertSqlSafe, Connection, Row, SqliteConnection};
use uuid::Uuid;

use crate::append::now_text;
use crate::error::store_err;
use crate::read::select_envelope;
use crate::store::SqliteStore;

/// The plain table: the event log's columns, a primary key and nothing else.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS bench_baseline (\
     position INTEGER PRIMARY KEY, event_id BLOB, stream TEXT, seq INTEGER, event_type TEXT, \
     data TEXT, metadata TEXT, recorded_at TEXT)";

/// Empties the plain table.
const EMPTY: &str = "DELETE FROM bench_baseline";

/// The plain insert, up to the rows.
const INSERT_START: &str = "INSERT INTO bench_baseline \
     (event_id, stream, seq, event_type, data, metadata, recorded_at) VALUES ";

/// Parameters per row of the plain insert.
const ROW_PARAMS: usize = 7;

/// Most rows one plain insert carries (SQLite allows 32766 parameters).
const CHUNK: usize = 500;

/// Every event, in position order.
const SCAN: &str = concat!(select_envelope!(), " ORDER BY position");

/// The log's length.
const LOG_LEN: &str = "SELECT count(*) FROM events";

/// The plain insert for `n` rows (`1..=CHUNK`), built once per length.
fn insert_sql(n: usize) -> &'static str {
    static SQL: [OnceLock<String>; CHUNK] = [const { OnceLock::new() }; CHUNK];
    SQL[n - 1].get_or_init(|| {
        let mut sql = String::from(INSERT_START);
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for j in 1..=ROW_PARAMS {
                if j > 1 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", i * ROW_PARAMS + j));
            }
            sql.push(')');
        }
        sql
    })
}

/// One row's values, encoded before the writer connection is taken (as the store does).
struct EncodedRow {
    event_id: Uuid,
    stream: Arc<str>,
    seq: i64,
    event_type: Arc<str>,
    data: Arc<str>,
    metadata: Arc<str>,
}

/// Encodes the rows' values.
fn encode(rows: &[BenchRow]) -> Result<Vec<EncodedRow>, StoreError> {
    let json = |v: &serde_json::Value| {
        serde_json::to_string(v)
            .map(Arc::from)
            .map_err(|e| StoreError::backend_with("cannot encode JSON", e))
    };
    rows.iter()
        .map(|row| {
            Ok(EncodedRow {
                event_id: row.event.event_id,
                stream: Arc::from(row.stream.as_str()),
                seq: row.seq.0 as i64,
                event_type: Arc::from(row.event.event_type.as_str()),
                data: json(&row.event.data)?,
                metadata: json(&row.event.metadata)?,
            })
        })
        .collect()
}

/// Inserts up to [`CHUNK`] rows with one plain statement.
async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[EncodedRow],
    recorded_at: &str,
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(insert_sql(rows.len()));
    for row in rows {
        query = query
            .bind(row.event_id)
            .bind(row.stream.clone())
            .bind(row.seq)
            .bind(row.event_type.clone())
            .bind(row.data.clone())
            .bind(row.metadata.clone())
            .bind(recorded_at);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// Decodes every column of an event row as the store's reads do, and drops it.
fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<(), sqlx::Error> {
    let json = |i| -> Result<serde_json::Value, sqlx::Error> {
        serde_json::from_str(row.try_get::<&str, _>(i)?).map_err(|e| sqlx::Error::Decode(e.into()))
    };
    let event_id: Uuid = row.try_get(0)?;
    let stream: String = row.try_get(1)?;
    let seq: i64 = row.try_get(2)?;
    let position: i64 = row.try_get(3)?;
    let event_type: String = row.try_get(4)?;
    let data = json(5)?;
    let metadata = json(6)?;
    let recorded_at: DateTime<Utc> = row.try_get(7)?;
    black_box((
        event_id,
        stream,
        seq,
        position,
        event_type,
        data,
        metadata,
        recorded_at,
    ));
    Ok(())
}

/// [`Baseline::baseline_lookup`]: one plain SELECT, built for the lookup.
async fn lookup(store: &SqliteStore, lookup: &BaselineLookup) -> Result<u64, StoreError> {
    if !lookup.is_well_named() {
        return Err(StoreError::InvalidInput(
            "a baseline lookup names its table and columns as SQL identifiers".into(),
        ));
    }
    let (ord, dir) = (
        lookup.order_by,
        if lookup.descending { " DESC" } else { "" },
    );
    let mut sql = format!(
        "SELECT e.event_id, e.stream, e.seq, e.position, e.event_type, e.data, e.metadata, \
         e.recorded_at FROM {} AS a JOIN events AS e ON e.position = a.position WHERE true",
        lookup.table
    );
    let mut n = 0;
    if let Some((column, _)) = &lookup.equal {
        n += 1;
        sql += &format!(" AND a.{column} = ?{n}");
    }
    for (bound, op) in [(lookup.from, ">="), (lookup.to, "<")] {
        if bound.is_some() {
            n += 1;
            sql += &format!(" AND a.{ord} {op} ?{n}");
        }
    }
    sql += &format!(
        " ORDER BY a.{ord}{dir}, a.position{dir} LIMIT {}",
        lookup.limit
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if let Some((_, value)) = &lookup.equal {
        query = query.bind(value.clone());
    }
    for bound in [lookup.from, lookup.to].into_iter().flatten() {
        query = query.bind(bound);
    }
    let rows = query
        .fetch_all(&store.inner.reader)
        .await
        .map_err(store_err)?;
    for row in &rows {
        decode(row).map_err(store_err)?;
    }
    Ok(rows.len() as u64)
}

impl Baseline for SqliteStore {
    fn baseline_chain_scan(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(crate::chain::raw_scan(&self.inner.reader))
    }

    fn baseline_reset(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.acquire().await.map_err(store_err)?;
            sqlx::query(CREATE)
                .execute(&mut *conn)
                .await
                .map_err(store_err)?;
            sqlx::query(EMPTY)
                .execute(&mut *conn)
                .await
                .map_err(store_err)?;
            Ok(())
        })
    }

    fn baseline_insert(&self, rows: Vec<BenchRow>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if rows.is_empty() {
                return Ok(());
            }
            let rows = encode(&rows)?;
            let mut conn = self.inner.writer.acquire().await.map_err(store_err)?;
            let recorded_at = now_text();
            if rows.len() <= CHUNK {
                return insert_rows(&mut conn, &rows, &recorded_at)
                    .await
                    .map_err(store_err);
            }
            let mut tx = conn.begin().await.map_err(store_err)?;
            for chunk in rows.chunks(CHUNK) {
                insert_rows(&mut tx, chunk, &recorded_at)
                    .await
                    .map_err(store_err)?;
            }
            tx.commit().await.map_err(store_err)
        })
    }

    fn baseline_scan(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut rows = sqlx::query(SCAN).fetch(&self.inner.reader);
            let mut count = 0u64;
            while let Some(row) = rows.try_next().await.map_err(store_err)? {
                decode(&row).map_err(store_err)?;
                count += 1;
            }
            Ok(count)
        })
    }

    fn baseline_lookup<'a>(
        &'a self,
        lookup: &'a BaselineLookup,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self::lookup(self, lookup))
    }

    fn log_len(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar(LOG_LEN)
                .fetch_one(&self.inner.reader)
                .await
                .map_err(store_err)?;
            Ok(n as u64)
        })
    }
}
