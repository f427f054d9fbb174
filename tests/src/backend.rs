//! Running one case on one backend: what the `store_test!` macro's generated tests call.
//!
//! Each function builds a fresh, empty store of its backend (a new memory store, a new SQLite
//! file, a new PostgreSQL database), hands it to the case, and cleans up afterwards.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use ledger_core::{StoreError, StoreOptions};
use ledger_memory::MemoryStore;
use ledger_postgres::PgStore;
use ledger_sqlite::SqliteStore;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};

use crate::sqlite::TempDb;
use crate::{Store, pg};

/// Runs `body` against a fresh in-memory store.
pub async fn memory<F, Fut>(options: StoreOptions, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    body(Arc::new(MemoryStore::with_options(options))).await;
}

/// Runs `body` against a store on a fresh SQLite file.
pub async fn sqlite<F, Fut>(options: StoreOptions, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TempDb::new();
    let store = SqliteStore::open(&db.url(), options)
        .await
        .unwrap_or_else(|e| panic!("opening the SQLite test database {} failed: {e}", db.url()));
    body(Arc::new(store)).await;
    drop(db);
}

/// Runs `body` against a store on a fresh, migrated PostgreSQL database, dropped afterwards.
pub async fn postgres<F, Fut>(options: StoreOptions, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    pg::with_database(true, move |url| async move {
        let store = PgStore::connect(&url, options)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database failed: {e}"));
        body(Arc::new(store)).await;
    })
    .await;
}

/// The database backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A fresh, not yet migrated database for the cases that need the database itself (raw SQL,
/// schema versions, other processes): an SQLite file that does not exist yet, or an empty
/// PostgreSQL database.
#[derive(Clone, Debug)]
pub struct Db {
    /// Which backend.
    pub kind: Kind,
    /// Its URL, as the stores and the CLI take it.
    pub url: String,
}

impl fmt::Display for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} database {}", self.kind, self.url)
    }
}

impl Db {
    /// The SQLite file's path (`None` for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        match self.kind {
            Kind::Sqlite => self.url.strip_prefix("sqlite://").map(Into::into),
            Kind::Postgres => None,
        }
    }

    /// Migrates the database to the ledger's schema; returns what the backend's `migrate` does.
    pub async fn migrate(&self) -> Result<(i64, i64), StoreError> {
        match self.kind {
            Kind::Sqlite => SqliteStore::migrate(&self.url).await,
            Kind::Postgres => PgStore::migrate(&self.url).await,
        }
    }

    /// Opens a store on the database (SQLite creates and migrates a missing file, PostgreSQL
    /// checks the schema version).
    pub async fn open(&self, options: StoreOptions) -> Result<Store, StoreError> {
        Ok(match self.kind {
            Kind::Sqlite => Arc::new(SqliteStore::open(&self.url, options).await?),
            Kind::Postgres => Arc::new(PgStore::connect(&self.url, options).await?),
        })
    }

    /// Runs one raw SQL statement; returns the rows it affected or the database's message.
    pub async fn execute(&self, sql: &str) -> Result<u64, String> {
        match self.kind {
            Kind::Sqlite => {
                let mut c = SqliteConnection::connect(&self.url)
                    .await
                    .map_err(|e| e.to_string())?;
                let r = sqlx::query(AssertSqlSafe(sql.to_string()))
                    .execute(&mut c)
                    .await;
                let _ = c.close().await;
                r.map(|r| r.rows_affected()).map_err(|e| e.to_string())
            }
            Kind::Postgres => {
                let mut c = PgConnection::connect(&self.url)
                    .await
                    .map_err(|e| e.to_string())?;
                let r = sqlx::query(AssertSqlSafe(sql.to_string()))
                    .execute(&mut c)
                    .await;
                let _ = c.close().await;
                r.map(|r| r.rows_affected()).map_err(|e| e.to_string())
            }
        }
    }

    /// Runs `sql` as the database superuser with the events table's own triggers out of the
    /// way, as someone tampering with the history would; the triggers are back afterwards.
    pub async fn tamper(&self, sql: &str) {
        match self.kind {
            Kind::Postgres => {
                for step in [
                    "ALTER TABLE events DISABLE TRIGGER USER",
                    sql,
                    "ALTER TABLE events ENABLE TRIGGER USER",
                ] {
                    self.execute(step)
                        .await
                        .unwrap_or_else(|e| panic!("{step} on {self}: {e}"));
                }
            }
            Kind::Sqlite => {
                // SQLite cannot disable a trigger: drop them, then put them back as they were.
                let mut c = SqliteConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("cannot open {self}: {e}"));
                let triggers: Vec<(String, String)> = sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master \
                     WHERE type = 'trigger' AND tbl_name = 'events'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("reading the triggers of {self}: {e}"));
                assert!(!triggers.is_empty(), "{self} has no triggers on events");
                let drops = triggers
                    .iter()
                    .map(|(name, _)| format!("DROP TRIGGER {name}"));
                let creates = triggers.iter().map(|(_, create)| create.clone());
                let steps: Vec<String> = drops.chain([sql.to_string()]).chain(creates).collect();
                for step in steps {
                    sqlx::query(AssertSqlSafe(step.clone()))
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{step} on {self}: {e}"));
                }
                let _ = c.close().await;
            }
        }
    }

    /// Runs a raw query that returns one integer.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let r = match self.kind {
            Kind::Sqlite => {
                let mut c = SqliteConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("cannot open {self}: {e}"));
                sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
            }
            Kind::Postgres => {
                let mut c = PgConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("cannot open {self}: {e}"));
                sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
            }
        };
        r.unwrap_or_else(|e| panic!("{sql} on {self} failed: {e}"))
    }
}

/// Runs `body` with a fresh SQLite database whose file does not exist yet.
pub async fn sqlite_db<F, Fut>(body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let temp = TempDb::new();
    body(Db {
        kind: Kind::Sqlite,
        url: temp.url(),
    })
    .await;
    drop(temp);
}

/// Runs `body` with a fresh, empty (not migrated) PostgreSQL database, dropped afterwards.
pub async fn postgres_db<F, Fut>(body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    pg::with_database(false, move |url| {
        body(Db {
            kind: Kind::Postgres,
            url,
        })
    })
    .await;
}
