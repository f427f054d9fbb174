//! The plain-SQL yardstick of `ledger bench`: a constraint-free table and a plain scan.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ledger_core::{BenchRow, StoreError};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::from_sqlx;

/// The baseline table: the event log's columns with only a primary key.
const CREATE_SQL: &str = "CREATE TABLE IF NOT EXISTS bench_baseline (\
     position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
     tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(), \
     event_id uuid NOT NULL, \
     stream text COLLATE \"C\" NOT NULL, \
     seq bigint NOT NULL, \
     event_type text NOT NULL, \
     data jsonb NOT NULL, \
     metadata jsonb NOT NULL, \
     recorded_at timestamptz NOT NULL DEFAULT now())";

/// Empties the baseline table.
const TRUNCATE_SQL: &str = "TRUNCATE bench_baseline RESTART IDENTITY";

/// One plain multi-row insert into the baseline table.
const INSERT_SQL: &str = "INSERT INTO bench_baseline \
     (event_id, stream, seq, event_type, data, metadata) \
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[], \
     $6::jsonb[])";

/// One plain single-row insert into the baseline table.
const INSERT_ONE_SQL: &str = "INSERT INTO bench_baseline \
     (event_id, stream, seq, event_type, data, metadata) VALUES ($1, $2, $3, $4, $5, $6)";

/// The plain ordered scan of the event log.
const SCAN_SQL: &str = "SELECT event_id, stream, seq, position, event_type, data, metadata, \
     recorded_at FROM events ORDER BY position";

/// The number of events.
const COUNT_SQL: &str = "SELECT count(*) FROM events";

/// Creates or empties the baseline table.
pub(crate) async fn reset(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query(CREATE_SQL)
        .execute(pool)
        .await
        .map_err(from_sqlx)?;
    sqlx::query(TRUNCATE_SQL)
        .execute(pool)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Inserts `rows` with one plain statement.
pub(crate) async fn insert(pool: &PgPool, rows: Vec<BenchRow>) -> Result<(), StoreError> {
    if let [one] = rows.as_slice() {
        sqlx::query(INSERT_ONE_SQL)
            .bind(one.event.event_id)
            .bind(one.stream.as_str())
            .bind(one.seq.0 as i64)
            .bind(one.event.event_type.as_str())
            .bind(&one.event.data)
            .bind(&one.event.metadata)
            .execute(pool)
            .await
            .map_err(from_sqlx)?;
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event.event_id).collect();
    let streams: Vec<&str> = rows.iter().map(|r| r.stream.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq.0 as i64).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event.event_type.as_str()).collect();
    let data: Vec<&Value> = rows.iter().map(|r| &r.event.data).collect();
    let metadata: Vec<&Value> = rows.iter().map(|r| &r.event.metadata).collect();
    sqlx::query(INSERT_SQL)
        .bind(ids)
        .bind(streams)
        .bind(seqs)
        .bind(types)
        .bind(data)
        .bind(metadata)
        .execute(pool)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Streams the whole log with one ordered SELECT, decoding every column; returns the count.
pub(crate) async fn scan(pool: &PgPool) -> Result<u64, StoreError> {
    type Row = (Uuid, String, i64, i64, String, Value, Value, DateTime<Utc>);
    let mut rows = sqlx::query_as::<_, Row>(SCAN_SQL).fetch(pool);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
        std::hint::black_box(row);
        count += 1;
    }
    Ok(count)
}

/// The number of events in the log.
pub(crate) async fn log_len(pool: &PgPool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(COUNT_SQL)
        .fetch_one(pool)
        .await
        .map_err(from_sqlx)?;
    Ok(n as u64)
}
