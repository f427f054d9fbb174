//! The key table (`ledger_keys`, migration 5): one data key per opaque subject, the only table
//! of the ledger whose rows change. Destroying a key sets it NULL, leaving a tombstone, and
//! then vacuums the table so that the row version holding the key is removed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ledger_core::{
    BoxFuture, DataKey, KeyRecord, KeyState, KeyStore, StoreError, fold_key_records,
};
use sqlx::{PgConnection, PgPool};

use crate::error::from_sqlx;
use crate::store::PgStore;
use crate::tx::{self, to_completion};

/// The row of subject `$1`.
const ROW_SQL: &str =
    "SELECT subject, key, created_at, erased_at FROM ledger_keys WHERE subject = $1::text";

/// The rows of the subjects in `$1`.
const ROWS_SQL: &str =
    "SELECT subject, key, created_at, erased_at FROM ledger_keys WHERE subject = ANY($1::text[])";

/// Every row, ordered by subject.
const ALL_SQL: &str =
    "SELECT subject, key, created_at, erased_at FROM ledger_keys ORDER BY subject";

/// Stores key `$2` for subject `$1` unless the subject has a row (live or erased).
const CREATE_SQL: &str = "INSERT INTO ledger_keys (subject, key) VALUES ($1::text, $2) \
     ON CONFLICT (subject) DO NOTHING";

/// A tombstone for subject `$1`, unless it has a row.
const TOMBSTONE_SQL: &str = "INSERT INTO ledger_keys (subject, key, created_at, erased_at) \
     VALUES ($1::text, NULL, now(), now()) ON CONFLICT (subject) DO NOTHING";

/// Destroys the live key of subject `$1` (an erased row keeps its `erased_at`).
const DESTROY_SQL: &str = "UPDATE ledger_keys SET key = NULL, erased_at = now() \
     WHERE subject = $1::text AND key IS NOT NULL";

/// Loads live rows (subjects `$1`, keys `$2`, creation times `$3`); a subject with a row keeps
/// it.
const IMPORT_LIVE_SQL: &str = "INSERT INTO ledger_keys (subject, key, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::timestamptz[]) \
     ON CONFLICT (subject) DO NOTHING";

/// Loads erased rows (subjects `$1`, creation times `$2`, erasure times `$3`); a live key of
/// the subject is destroyed, an erased row stays as it was.
const IMPORT_ERASED_SQL: &str = "INSERT INTO ledger_keys AS k \
     (subject, key, created_at, erased_at) \
     SELECT u.subject, NULL, u.created_at, u.erased_at \
     FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[]) \
     AS u(subject, created_at, erased_at) \
     ON CONFLICT (subject) DO UPDATE SET key = NULL, erased_at = excluded.erased_at \
     WHERE k.key IS NOT NULL";

/// Removes the dead row versions of the key table.
const VACUUM_SQL: &str = "VACUUM ledger_keys";

/// Rows an import writes per statement.
const CHUNK: usize = 1000;

/// The selected columns.
type KeyRow = (
    String,
    Option<Vec<u8>>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

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
        created_at,
        erased_at,
    })
}

/// The state of `subject`'s row, if it has one.
async fn state(conn: &mut PgConnection, subject: &str) -> Result<Option<KeyState>, StoreError> {
    let row: Option<KeyRow> = sqlx::query_as(ROW_SQL)
        .bind(subject)
        .fetch_optional(conn)
        .await
        .map_err(from_sqlx)?;
    Ok(row.map(record).transpose()?.map(|r| r.state()))
}

/// Vacuums the key table after a key was destroyed, logging a failure.
///
/// An UPDATE leaves the old version of the row, key included, in the table's pages until a
/// vacuum removes it; until then anyone who can read the files (or inspect the pages) can
/// read the key. VACUUM cannot run inside a transaction, so it runs after the update's commit
/// and is best-effort: autovacuum removes the old version later if this fails. The bytes may
/// still linger in the write-ahead log and in free space of the pages until overwritten.
async fn vacuum(pool: &PgPool) {
    if let Err(e) = sqlx::raw_sql(VACUUM_SQL).execute(pool).await {
        tracing::warn!(
            error = %e,
            "a data key was destroyed but the key table could not be vacuumed; \
             autovacuum will remove its old row version later"
        );
    }
}

/// Loads `records` in one transaction; the rows written and whether any erased record wrote.
async fn import(pool: &PgPool, records: Vec<KeyRecord>) -> Result<(u64, bool), StoreError> {
    let mut live = (Vec::new(), Vec::new(), Vec::new());
    let mut erased = (Vec::new(), Vec::new(), Vec::new());
    for r in fold_key_records(records) {
        match (r.key, r.erased_at) {
            (Some(key), None) => {
                live.0.push(r.subject);
                live.1.push(key.0.to_vec());
                live.2.push(r.created_at);
            }
            (_, at) => {
                erased.0.push(r.subject);
                erased.1.push(r.created_at);
                erased.2.push(at.unwrap_or(r.created_at));
            }
        }
    }
    let mut tx = tx::begin(pool, None).await?;
    let mut written = 0u64;
    for start in (0..live.0.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(live.0.len());
        written += sqlx::query(IMPORT_LIVE_SQL)
            .bind(&live.0[start..end])
            .bind(&live.1[start..end])
            .bind(&live.2[start..end])
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?
            .rows_affected();
    }
    let mut erasing = 0u64;
    for start in (0..erased.0.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(erased.0.len());
        erasing += sqlx::query(IMPORT_ERASED_SQL)
            .bind(&erased.0[start..end])
            .bind(&erased.1[start..end])
            .bind(&erased.2[start..end])
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?
            .rows_affected();
    }
    tx::commit(tx).await?;
    Ok((written + erasing, erasing > 0))
}

impl KeyStore for PgStore {
    /// Reads the row; a subject without one gets `fresh` unless a row appeared meanwhile
    /// (`ON CONFLICT DO NOTHING`, which waits for a racing insert), and the row is read again
    /// in a statement of its own, which sees a racing caller's committed key. Runs to its end
    /// even if the caller is dropped.
    fn key_for_writing(
        &self,
        subject: &str,
        fresh: DataKey,
    ) -> BoxFuture<'_, Result<KeyState, StoreError>> {
        let (pool, subject) = (self.pool.clone(), subject.to_string());
        Box::pin(async move {
            to_completion(async move {
                let mut conn = pool.acquire().await.map_err(from_sqlx)?;
                // Most subjects already have their key: one read.
                if let Some(state) = state(&mut conn, &subject).await? {
                    return Ok(state);
                }
                sqlx::query(CREATE_SQL)
                    .bind(&subject)
                    .bind(fresh.0.to_vec())
                    .execute(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
                state(&mut conn, &subject).await?.ok_or_else(|| {
                    StoreError::backend(format!("the key row of {subject:?} vanished"))
                })
            })
            .await?
        })
    }

    /// One query for all of `subjects`.
    fn keys<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, KeyState>, StoreError>> {
        Box::pin(async move {
            if subjects.is_empty() {
                return Ok(HashMap::new());
            }
            let rows: Vec<KeyRow> = sqlx::query_as(ROWS_SQL)
                .bind(subjects)
                .fetch_all(&self.pool)
                .await
                .map_err(from_sqlx)?;
            rows.into_iter()
                .map(|row| record(row).map(|r| (r.subject.clone(), r.state())))
                .collect()
        })
    }

    /// Inserts a tombstone (created and erased now) when the subject has no row, otherwise
    /// sets a live key NULL and `erased_at` to now; an erased row keeps its `erased_at`. After
    /// a key was destroyed the table is vacuumed (best-effort, see `vacuum`). Runs to its end
    /// even if the caller is dropped.
    fn destroy_key<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (pool, subject) = (self.pool.clone(), subject.to_string());
        Box::pin(async move {
            to_completion(async move {
                // The tombstone first: once it conflicts the row exists for good (rows are
                // never deleted), so the update below cannot miss a key inserted meanwhile.
                let inserted = sqlx::query(TOMBSTONE_SQL)
                    .bind(&subject)
                    .execute(&pool)
                    .await
                    .map_err(from_sqlx)?
                    .rows_affected();
                if inserted > 0 {
                    return Ok(false);
                }
                let destroyed = sqlx::query(DESTROY_SQL)
                    .bind(&subject)
                    .execute(&pool)
                    .await
                    .map_err(from_sqlx)?
                    .rows_affected()
                    > 0;
                if destroyed {
                    vacuum(&pool).await;
                }
                Ok(destroyed)
            })
            .await?
        })
    }

    fn key_records(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<KeyRow> = sqlx::query_as(ALL_SQL)
                .fetch_all(&self.pool)
                .await
                .map_err(from_sqlx)?;
            rows.into_iter().map(record).collect()
        })
    }

    /// In one transaction. A subject listed twice counts once: its records are folded as if
    /// imported one after the other. An erased record without `erased_at` is erased at its
    /// `created_at`. When an erased record wrote, the table is vacuumed after the commit.
    fn import_keys(&self, records: Vec<KeyRecord>) -> BoxFuture<'_, Result<u64, StoreError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            to_completion(async move {
                let (written, erasing) = import(&pool, records).await?;
                if erasing {
                    vacuum(&pool).await;
                }
                Ok(written)
            })
            .await?
        })
    }
}
