//! The embedded migrations and the schema version check.

use ledger_core::StoreError;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Connection, SqliteConnection};

use crate::error::{migrate_err, store_err};

/// The event log schema, `migrations/sqlite/*.sql`, embedded at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Whether sqlx's bookkeeping table exists.
const HAS_MIGRATIONS_TABLE: &str =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";

/// Every migration the database records, applied or failed.
const APPLIED_MIGRATIONS: &str = "SELECT version, success FROM _sqlx_migrations";

/// The schema version this code needs: the highest migration number.
pub(crate) fn required_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What the database's `_sqlx_migrations` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SchemaState {
    /// The highest successfully applied version (0 for a database without ledger tables).
    pub(crate) found: i64,
    /// True when an applied migration is unknown to this code: a newer ledger migrated it.
    pub(crate) ahead: bool,
    /// A migration that started but did not finish.
    pub(crate) dirty: Option<i64>,
}

impl SchemaState {
    /// `Ok` when the database is exactly at the version this code needs.
    pub(crate) fn check(self) -> Result<(), StoreError> {
        let needed = required_version();
        if let Some(version) = self.dirty {
            return Err(StoreError::backend(format!(
                "migration {version} is partially applied; restore the database from a backup"
            )));
        }
        if self.ahead || self.found != needed {
            return Err(StoreError::SchemaMismatch {
                found: self.found,
                needed,
            });
        }
        Ok(())
    }
}

/// Reads the database's schema state.
pub(crate) async fn schema_state(conn: &mut SqliteConnection) -> Result<SchemaState, StoreError> {
    let tables: i64 = sqlx::query_scalar(HAS_MIGRATIONS_TABLE)
        .fetch_one(&mut *conn)
        .await
        .map_err(store_err)?;
    let mut state = SchemaState {
        found: 0,
        ahead: false,
        dirty: None,
    };
    if tables == 0 {
        return Ok(state);
    }
    let rows: Vec<(i64, bool)> = sqlx::query_as(APPLIED_MIGRATIONS)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
    for (version, success) in rows {
        if !success {
            state.dirty = Some(version);
        } else {
            state.found = state.found.max(version);
            if !MIGRATOR.version_exists(version) {
                state.ahead = true;
            }
        }
    }
    Ok(state)
}

/// Applies pending migrations under SQLite's write lock, so that processes migrating one file
/// at once take turns; returns the versions before and after.
pub(crate) async fn migrate(conn: &mut SqliteConnection) -> Result<(i64, i64), StoreError> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_err)?;
    let before = schema_state(&mut tx).await?;
    if before.ahead {
        return Err(StoreError::SchemaMismatch {
            found: before.found,
            needed: required_version(),
        });
    }
    apply_pending(&mut tx).await.map_err(migrate_err)?;
    crate::chain::fill(&mut tx).await?;
    let after = schema_state(&mut tx).await?;
    tx.commit().await.map_err(store_err)?;
    Ok((before.found, after.found))
}

/// Applies the migrations the database lacks, each in a savepoint of the caller's
/// transaction, after checking that the applied ones are unchanged (what `Migrator::run`
/// does; its `Acquire` bound would make `open`'s future unusable with `tokio::spawn`).
async fn apply_pending(conn: &mut SqliteConnection) -> Result<(), MigrateError> {
    let table = &*MIGRATOR.table_name;
    conn.ensure_migrations_table(table).await?;
    if let Some(version) = conn.dirty_version(table).await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied = conn.list_applied_migrations(table).await?;
    for migration in MIGRATOR.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        match applied.iter().find(|a| a.version == migration.version) {
            Some(a) if a.checksum != migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => {}
            None => {
                conn.apply(table, migration).await?;
            }
        }
    }
    Ok(())
}
