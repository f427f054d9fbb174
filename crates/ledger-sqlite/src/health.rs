//! Whether the writer connection can write: the faults writes run into, a probe that finds out
//! whether they are gone, and the pool hooks that keep a connection whose transaction or write
//! failed out of service.
//!
//! A failed write is recorded, and the next caller of the writer gets a fresh connection: one
//! opened while the file was read-only stays read-only. The next successful write clears the
//! record; until then [`WriteHealth::fault`] probes (at most once per [`PROBE_INTERVAL`]) so
//! that a server nobody writes to notices when the fault is gone.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use ledger_core::StoreError;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{AssertSqlSafe, Connection, SqliteConnection, SqlitePool};

use crate::error::fault_of;

/// How long a probe's answer stands before the database is asked again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// True when the file has reached its page limit with no free page left: the next write that
/// needs a page fails with `SQLITE_FULL`.
const AT_PAGE_LIMIT: &str = "SELECT p.page_count >= m.max_page_count AND f.freelist_count = 0 \
     FROM pragma_page_count() AS p, pragma_max_page_count() AS m, pragma_freelist_count() AS f";

/// What a write ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `SQLITE_FULL`: no space left on the device, or the file's page limit.
    Full,
    /// `SQLITE_READONLY`: the file (or its directory) cannot be written.
    ReadOnly,
    /// `SQLITE_IOERR` or an I/O error.
    Io,
    /// `SQLITE_CANTOPEN`.
    CantOpen,
    /// `SQLITE_BUSY`/`SQLITE_LOCKED` after the busy timeout, or no writer connection in time.
    Locked,
    /// Anything else.
    Other,
}

impl Fault {
    /// For an operator: what is wrong.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Fault::Full => "disk full",
            Fault::ReadOnly => "database is read-only",
            Fault::Io => "I/O error",
            Fault::CantOpen => "cannot open the database file",
            Fault::Locked => "locked by another writer",
            Fault::Other => "unexpected database error",
        }
    }
}

/// What is known about the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// Nothing yet: the first question probes.
    Unchecked,
    /// The last write succeeded.
    Writable,
    /// A write failed since the last success; `probed` is the last probe and what it found.
    Failing { probed: Option<(Instant, Fault)> },
}

/// The writer's health, shared by the store and the writer pool's hook.
#[derive(Debug)]
pub(crate) struct WriteHealth {
    known: Mutex<Known>,
    /// Set by a failed write or probe: the next acquire of the writer opens a fresh connection.
    reconnect: AtomicBool,
}

impl Default for WriteHealth {
    fn default() -> Self {
        Self {
            known: Mutex::new(Known::Unchecked),
            reconnect: AtomicBool::new(false),
        }
    }
}

impl WriteHealth {
    fn set(&self, known: Known) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = known;
    }

    fn get(&self) -> Known {
        *self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failed write (or a failed step of one, e.g. its `BEGIN`) and passes the
    /// error on: a failure of the database (`Unavailable`) marks writes failing and retires
    /// the connection.
    pub(crate) fn failed(&self, error: StoreError) -> StoreError {
        if matches!(error, StoreError::Unavailable { .. }) {
            self.reconnect.store(true, Ordering::Release);
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(*known, Known::Failing { .. }) {
                *known = Known::Failing { probed: None };
            }
        }
        error
    }

    /// Records the outcome of a write and passes it on.
    pub(crate) fn record<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() {
            self.set(Known::Writable);
        }
        result.map_err(|e| self.failed(e))
    }

    /// Why writes fail now, or `None`. While a fault is recorded (and once at first) this
    /// asks the database with [`probe`], at most once per [`PROBE_INTERVAL`].
    pub(crate) async fn fault(&self, writer: &SqlitePool) -> Option<Fault> {
        match self.get() {
            Known::Writable => return None,
            Known::Failing {
                probed: Some((at, fault)),
            } if at.elapsed() < PROBE_INTERVAL => return Some(fault),
            Known::Unchecked | Known::Failing { .. } => {}
        }
        match probe(writer).await {
            Ok(()) => {
                self.set(Known::Writable);
                None
            }
            Err(fault) => {
                self.reconnect.store(true, Ordering::Release);
                self.set(Known::Failing {
                    probed: Some((Instant::now(), fault)),
                });
                Some(fault)
            }
        }
    }

    /// The writer pool's `before_acquire`: false (close it, open a fresh one) after a failure.
    pub(crate) fn keep(&self) -> bool {
        !self.reconnect.swap(false, Ordering::AcqRel)
    }
}

/// Finds out whether the writer can write, changing nothing: takes the write lock, checks the
/// page limit and commits a rewrite of the header's `user_version` with its own value, a
/// commit that writes to the log as an append's would.
async fn probe(writer: &SqlitePool) -> Result<(), Fault> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| fault_of(&e))?;
    let full: bool = sqlx::query_scalar(AT_PAGE_LIMIT)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| fault_of(&e))?;
    if full {
        return Err(Fault::Full);
    }
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| fault_of(&e))?;
    sqlx::query(AssertSqlSafe(format!("PRAGMA user_version = {version}")))
        .execute(&mut *tx)
        .await
        .map_err(|e| fault_of(&e))?;
    tx.commit().await.map_err(|e| fault_of(&e))
}

/// `after_release` of both pools: a connection goes back into service only outside any
/// transaction. When a statement or COMMIT fails with `SQLITE_FULL` or `SQLITE_IOERR`, SQLite
/// rolls the whole transaction back by itself; the ROLLBACK sqlx then sends (or queues when the
/// transaction is dropped) fails, and sqlx still counts the connection as inside a transaction,
/// so every later `BEGIN` on it would be refused. Such a connection is closed instead, and the
/// pool opens a fresh one.
pub(crate) fn outside_transaction(
    conn: &mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // A dropped transaction queued its ROLLBACK; the ping is answered after it ran.
        conn.ping().await?;
        Ok(!conn.is_in_transaction())
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;
    use crate::error::store_err;

    #[tokio::test]
    async fn a_read_only_connection_is_an_unavailable_database() {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .unwrap()
            .pragma("query_only", "1");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let error = sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert_eq!(fault_of(&error), Fault::ReadOnly);
        assert_eq!(store_err(error).code(), "unavailable");
        assert_eq!(probe(&pool).await, Err(Fault::ReadOnly));
    }

    #[tokio::test]
    async fn failures_are_remembered_until_a_write_succeeds() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let health = WriteHealth::default();
        assert!(health.keep());
        let failed: Result<(), _> = Err(StoreError::unavailable("disk full"));
        assert!(health.record(failed).is_err());
        assert!(!health.keep(), "the failed connection is retired once");
        assert!(health.keep());
        // A write that succeeds clears the fault without asking the database.
        assert!(health.record(Ok(())).is_ok());
        assert_eq!(health.fault(&pool).await, None);
        // A refusal that is not the database's fault changes nothing.
        let _ = health.failed(StoreError::EmptyBatch);
        assert_eq!(health.get(), Known::Writable);
        assert!(health.keep());
        // A recorded failure is checked by the probe, which finds this database writable.
        let _ = health.failed(StoreError::unavailable("disk full"));
        assert_eq!(health.fault(&pool).await, None);
        assert_eq!(health.get(), Known::Writable);
    }
}
