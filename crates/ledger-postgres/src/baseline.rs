//! The plain-SQL yardstick of `ledger bench`: a constraint-free table and a plain scan; and
//! scratch databases, created for one run and dropped afterwards, so a benchmark never touches
//! a database that holds someone's ledger.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ledger_core::{BaselineLookup, BenchRow, StoreError};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
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

/// [`ledger_core::Baseline::baseline_lookup`]: one plain SELECT, built for the lookup.
pub(crate) async fn lookup(pool: &PgPool, lookup: &BaselineLookup) -> Result<u64, StoreError> {
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
        sql += &format!(" AND a.{column} = ${n}");
    }
    for (bound, op) in [(lookup.from, ">="), (lookup.to, "<")] {
        if bound.is_some() {
            n += 1;
            sql += &format!(" AND a.{ord} {op} ${n}");
        }
    }
    sql += &format!(
        " ORDER BY a.{ord}{dir}, a.position{dir} LIMIT {}",
        lookup.limit
    );
    type Row = (Uuid, String, i64, i64, String, Value, Value, DateTime<Utc>);
    let mut query = sqlx::query_as::<_, Row>(AssertSqlSafe(sql));
    if let Some((_, value)) = &lookup.equal {
        query = query.bind(value);
    }
    for bound in [lookup.from, lookup.to].into_iter().flatten() {
        query = query.bind(bound);
    }
    let rows = query.fetch_all(pool).await.map_err(from_sqlx)?;
    let count = rows.len() as u64;
    std::hint::black_box(rows);
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

/// A database this process created on a PostgreSQL server; [`drop_database`](Self::drop_database) removes it.
#[derive(Debug)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates an empty database `<prefix>_<uuid>` on the server `server_url` points at
    /// (connecting to the database it names, e.g. `postgres`). `prefix` is lowercase letters,
    /// digits and underscores.
    pub async fn create(server_url: &str, prefix: &str) -> Result<Self, StoreError> {
        let valid = prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::InvalidInput(format!(
                "a scratch database prefix is lowercase letters, digits and underscores, not {prefix:?}"
            )));
        }
        let name = format!("{prefix}_{}", Uuid::now_v7().simple());
        // The name is made here from checked characters: an identifier cannot be a bind parameter.
        execute(server_url, &format!("CREATE DATABASE \"{name}\"")).await?;
        Ok(Self {
            url: with_database(server_url, &name),
            server_url: server_url.to_string(),
            name,
        })
    }

    /// The new database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the new database (the server URL with its database name replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_database(self) -> Result<(), StoreError> {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        execute(&self.server_url, &sql).await
    }
}

/// Runs one statement on its own connection to `url`.
async fn execute(url: &str, sql: &str) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect(url).await.map_err(from_sqlx)?;
    let result = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(from_sqlx);
    let _ = conn.close().await;
    result
}

/// `url` with its database name (the path) replaced by `database`; the query is kept.
fn with_database(url: &str, database: &str) -> String {
    let (head, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let host_start = head.find("://").map_or(0, |i| i + 3);
    let path = head[host_start..]
        .find('/')
        .map_or(head.len(), |i| host_start + i);
    format!("{}/{database}{query}", &head[..path])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced() {
        for (url, want) in [
            ("postgres://u@h:5432/postgres", "postgres://u@h:5432/x"),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgresql://h", "postgresql://h/x"),
            ("postgres:///db?host=/run/pg", "postgres:///x?host=/run/pg"),
        ] {
            assert_eq!(with_database(url, "x"), want);
        }
    }
}
