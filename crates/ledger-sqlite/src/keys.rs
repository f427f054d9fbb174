//! The key table (`ledger_keys`, migration 5): one data key per opaque subject, the only table
//! of the ledger whose rows change. Every write to it runs with `secure_delete` on; destroying
//! a key sets it NULL, leaving a tombstone, and then checkpoints the WAL into the file and
//! truncates it, so that the key's bytes are overwritten where SQLite had them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ledger_core::{
    BoxFuture, DataKey, KeyRecord, KeyState, KeyStore, StoreError, fold_key_records,
};
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

use crate::append::{now_text, time_text};
use crate::error::store_err;
use crate::store::SqliteStore;

/// The row of subject `?1`.
const ROW_SQL: &str =
    "SELECT subject, key, created_at, erased_at FROM ledger_keys WHERE subject = ?1";

/// The start of a query for the rows of some subjects: the list of `?n` follows.
const ROWS_SQL: &str =
    "SELECT subject, key, created_at, erased_at FROM ledger_keys WHERE subject IN (";

/// Every row, ordered by subject.
const ALL_SQL: &str =
    "SELECT subject, key, created_at, erased_at FROM ledger_keys ORDER BY subject";

/// Stores key `?2`, made at `?3`, for subject `?1` unless the subject has a row.
const CREATE_SQL: &str = "INSERT INTO ledger_keys (subject, key, created_at, erased_at) \
     VALUES (?1, ?2, ?3, NULL) ON CONFLICT (subject) DO NOTHING";

/// A tombstone for subject `?1`, made and erased at `?2`, unless the subject has a row.
const TOMBSTONE_SQL: &str = "INSERT INTO ledger_keys (subject, key, created_at, erased_at) \
     VALUES (?1, NULL, ?2, ?2) ON CONFLICT (subject) DO NOTHING";

/// Destroys the live key of subject `?1` at `?2` (an erased row keeps its `erased_at`).
const DESTROY_SQL: &str = "UPDATE ledger_keys SET key = NULL, erased_at = ?2 \
     WHERE subject = ?1 AND key IS NOT NULL";

/// Loads an erased row (subject `?1`, made at `?2`, erased at `?3`): a live key of the subject
/// is destroyed, an erased row stays as it was.
const IMPORT_ERASED_SQL: &str = "INSERT INTO ledger_keys (subject, key, created_at, erased_at) \
     VALUES (?1, NULL, ?2, ?3) ON CONFLICT (subject) DO UPDATE \
     SET key = NULL, erased_at = excluded.erased_at WHERE ledger_keys.key IS NOT NULL";

/// At most this many subjects per query (bound parameters).
const CHUNK: usize = 500;

/// How long the checkpoint after a destroy waits for other connections' reads and writes, in
/// milliseconds: it holds the writer meanwhile, so not the store's usual busy timeout.
const CHECKPOINT_WAIT_MS: i64 = 1000;

/// The selected columns.
type KeyRow = (String, Option<Vec<u8>>, String, Option<String>);

/// A stored time (RFC 3339 text).
fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::backend_with("a time of the key table does not decode", e))
}

/// Decodes a selected row.
fn record(row: KeyRow) -> Result<KeyRecord, StoreError> {
    let (subject, key, created_at, erased_at) = row;
    let key = match key {
        Some(bytes) => Some(DataKey::from_slice(&bytes).ok_or_else(|| {
            StoreError::backend(format!("the stored key of {subject:?} is not 32 bytes"))
        })?),
        None => None,
    };
    Ok(KeyRecord {
        subject,
        key,
        created_at: time(&created_at)?,
        erased_at: erased_at.as_deref().map(time).transpose()?,
    })
}

/// The state of `subject`'s row, if it has one.
async fn state(conn: &mut SqliteConnection, subject: &str) -> Result<Option<KeyState>, StoreError> {
    let row: Option<KeyRow> = sqlx::query_as(ROW_SQL)
        .bind(subject)
        .fetch_optional(conn)
        .await
        .map_err(store_err)?;
    Ok(row.map(record).transpose()?.map(|r| r.state()))
}

/// Runs `write` (a write to the key table, which may destroy keys: true when it did) on the
/// writer connection with `secure_delete` on, then checkpoints the WAL if it destroyed any;
/// `secure_delete` is put back as it was, whatever happened.
///
/// Without `secure_delete` SQLite leaves the old bytes of a changed row in the page's free
/// space, and copies of rows in pages that a split rewrote or freed; with it on for every
/// write to this table, what is freed is overwritten with zeros, so a destroyed key survives
/// only in older page versions: the database file (until a checkpoint copies the new page over
/// it) and earlier WAL frames (which a checkpoint does not erase). So after a destroy the WAL
/// is checkpointed into the file and truncated to nothing. The checkpoint is best-effort:
/// another connection reading or writing keeps it from completing (logged), and a later one
/// overwrites the file's page; the WAL's old frames stay until it is reset and written over.
async fn securely<T>(
    conn: &mut SqliteConnection,
    write: impl AsyncFnOnce(&mut SqliteConnection) -> Result<(T, bool), StoreError>,
) -> Result<T, StoreError> {
    let before: i64 = sqlx::query_scalar("PRAGMA secure_delete")
        .fetch_one(&mut *conn)
        .await
        .map_err(store_err)?;
    sqlx::query("PRAGMA secure_delete = ON")
        .execute(&mut *conn)
        .await
        .map_err(store_err)?;
    let result = write(&mut *conn).await;
    if let Ok((_, true)) = &result {
        checkpoint(conn).await;
    }
    let restore = format!("PRAGMA secure_delete = {}", before.clamp(0, 2));
    // Best-effort: a connection that kept it on only zeroes more of what it frees.
    let _ = sqlx::query(AssertSqlSafe(restore))
        .execute(&mut *conn)
        .await;
    result.map(|(value, _)| value)
}

/// Checkpoints the WAL into the database file and truncates it, waiting for other connections
/// at most [`CHECKPOINT_WAIT_MS`]; a checkpoint that cannot complete is logged.
async fn checkpoint(conn: &mut SqliteConnection) {
    let waited: Result<i64, sqlx::Error> = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await;
    let set = format!("PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}");
    let _ = sqlx::query(AssertSqlSafe(set)).execute(&mut *conn).await;
    let done: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
    match done {
        Ok((0, _, _)) => {}
        Ok((_, log, copied)) => tracing::warn!(
            wal_pages = log,
            copied_pages = copied,
            "a data key was destroyed but the WAL could not be checkpointed and truncated \
             (other connections are using the database); its old bytes stay in the WAL until a \
             later checkpoint"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "a data key was destroyed but the WAL could not be checkpointed"
        ),
    }
    if let Ok(ms) = waited {
        let reset = format!("PRAGMA busy_timeout = {}", ms.max(0));
        let _ = sqlx::query(AssertSqlSafe(reset)).execute(&mut *conn).await;
    }
}

/// Inserts a tombstone or destroys the live key of `subject`, in one transaction; true when a
/// live key was destroyed.
async fn destroy(conn: &mut SqliteConnection, subject: &str) -> Result<bool, StoreError> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_err)?;
    let now = now_text();
    let inserted = sqlx::query(TOMBSTONE_SQL)
        .bind(subject)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?
        .rows_affected();
    let destroyed = inserted == 0
        && sqlx::query(DESTROY_SQL)
            .bind(subject)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?
            .rows_affected()
            > 0;
    tx.commit().await.map_err(store_err)?;
    Ok(destroyed)
}

/// Loads `records` in one transaction; the rows written and whether an erased record wrote.
async fn import(
    conn: &mut SqliteConnection,
    records: Vec<KeyRecord>,
) -> Result<(u64, bool), StoreError> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_err)?;
    let (mut written, mut erasing) = (0u64, false);
    for r in fold_key_records(records) {
        let created = time_text(r.created_at);
        let live = r.key.is_some();
        let n = match (r.key, r.erased_at) {
            (Some(key), None) => sqlx::query(CREATE_SQL)
                .bind(&r.subject)
                .bind(key.0.to_vec())
                .bind(created),
            (_, at) => {
                let erased = time_text(at.unwrap_or(r.created_at));
                sqlx::query(IMPORT_ERASED_SQL)
                    .bind(&r.subject)
                    .bind(created)
                    .bind(erased)
            }
        }
        .execute(&mut *tx)
        .await
        .map_err(store_err)?
        .rows_affected();
        written += n;
        erasing |= n > 0 && !live;
    }
    tx.commit().await.map_err(store_err)?;
    Ok((written, erasing))
}

impl KeyStore for SqliteStore {
    /// Reads the row on a reader connection; only a subject without one goes to the writer,
    /// which inserts `fresh` unless a row appeared meanwhile (with `secure_delete` on, see
    /// `securely`) and reads the row back.
    fn key_for_writing(
        &self,
        subject: &str,
        fresh: DataKey,
    ) -> BoxFuture<'_, Result<KeyState, StoreError>> {
        let subject = subject.to_string();
        Box::pin(async move {
            {
                let mut conn = self.inner.reader.acquire().await.map_err(store_err)?;
                if let Some(state) = state(&mut conn, &subject).await? {
                    return Ok(state);
                }
            }
            let written = async {
                let mut conn = self.inner.writer.acquire().await.map_err(store_err)?;
                securely(&mut conn, async |conn: &mut SqliteConnection| {
                    sqlx::query(CREATE_SQL)
                        .bind(&subject)
                        .bind(fresh.0.to_vec())
                        .bind(now_text())
                        .execute(&mut *conn)
                        .await
                        .map_err(store_err)?;
                    let state = state(conn, &subject).await?.ok_or_else(|| {
                        StoreError::backend(format!("the key row of {subject:?} vanished"))
                    })?;
                    Ok((state, false))
                })
                .await
            };
            self.inner.health.record(written.await)
        })
    }

    /// One query per [`CHUNK`] subjects (SQLite bounds the parameters of a statement).
    fn keys<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, KeyState>, StoreError>> {
        Box::pin(async move {
            let mut found = HashMap::new();
            if subjects.is_empty() {
                return Ok(found);
            }
            let mut conn = self.inner.reader.acquire().await.map_err(store_err)?;
            for chunk in subjects.chunks(CHUNK) {
                let params: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
                let sql = format!("{ROWS_SQL}{})", params.join(", "));
                let mut query = sqlx::query_as::<_, KeyRow>(AssertSqlSafe(sql))
                    .persistent(chunk.len() == CHUNK);
                for subject in chunk {
                    query = query.bind(subject);
                }
                for row in query.fetch_all(&mut *conn).await.map_err(store_err)? {
                    let r = record(row)?;
                    found.insert(r.subject.clone(), r.state());
                }
            }
            Ok(found)
        })
    }

    /// Inserts a tombstone (created and erased now) when the subject has no row, otherwise
    /// sets a live key NULL and `erased_at` to now; an erased row keeps its `erased_at`. With
    /// `secure_delete` on, and the WAL checkpointed and truncated after a key was destroyed
    /// (best-effort, see `securely`).
    fn destroy_key<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let written = async {
                let mut conn = self.inner.writer.acquire().await.map_err(store_err)?;
                securely(&mut conn, async move |conn: &mut SqliteConnection| {
                    let destroyed = destroy(conn, subject).await?;
                    Ok((destroyed, destroyed))
                })
                .await
            };
            self.inner.health.record(written.await)
        })
    }

    fn key_records(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<KeyRow> = sqlx::query_as(ALL_SQL)
                .fetch_all(&self.inner.reader)
                .await
                .map_err(store_err)?;
            rows.into_iter().map(record).collect()
        })
    }

    /// In one transaction on the writer, with `secure_delete` on. A subject listed twice
    /// counts once: its records are folded as if imported one after the other. An erased
    /// record without `erased_at` is erased at its `created_at`. When an erased record wrote,
    /// the WAL is checkpointed and truncated after the commit, as after a destroy.
    fn import_keys(&self, records: Vec<KeyRecord>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let written = async {
                let mut conn = self.inner.writer.acquire().await.map_err(store_err)?;
                securely(&mut conn, async move |conn: &mut SqliteConnection| {
                    import(conn, records).await
                })
                .await
            };
            self.inner.health.record(written.await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_read_back() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        assert_eq!(time(&time_text(t)).unwrap(), t);
        assert!(time("yesterday").is_err());
    }
}
