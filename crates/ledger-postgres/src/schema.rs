//! The event log's schema: embedded migrations, applying them and checking the version.

use std::collections::BTreeSet;

use ledger_core::StoreError;
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::error::{from_migrate, from_sqlx};

/// The migrations of `migrations/postgres`, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Whether sqlx's bookkeeping table exists (an empty database has none).
const HAS_MIGRATIONS_TABLE: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";

/// The versions of the migrations applied successfully.
const APPLIED_VERSIONS: &str =
    "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// The schema version this code needs: the highest migration number.
pub(crate) fn required_version() -> i64 {
    known_versions().last().copied().unwrap_or(0)
}

/// The versions of the embedded migrations.
fn known_versions() -> BTreeSet<i64> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect()
}

/// Where a database's schema stands relative to this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaState {
    /// Exactly the migrations this code knows are applied.
    Current,
    /// Some of this code's migrations are missing; `found` is the last applied in sequence.
    Behind {
        /// The database's version (0 for an empty database).
        found: i64,
    },
    /// Migrations this code does not know were applied: a newer ledger migrated it.
    Ahead {
        /// The highest applied version.
        found: i64,
    },
}

impl SchemaState {
    /// The database's version.
    pub(crate) fn version(self) -> i64 {
        match self {
            SchemaState::Current => required_version(),
            SchemaState::Behind { found } | SchemaState::Ahead { found } => found,
        }
    }

    /// `Ok` when current, otherwise the `SchemaMismatch` error.
    pub(crate) fn check(self) -> Result<(), StoreError> {
        match self {
            SchemaState::Current => Ok(()),
            _ => Err(StoreError::SchemaMismatch {
                found: self.version(),
                needed: required_version(),
            }),
        }
    }
}

/// Reads which migrations the database has and compares them with this code's.
pub(crate) async fn state(conn: &mut PgConnection) -> Result<SchemaState, StoreError> {
    let has_table: bool = sqlx::query_scalar(HAS_MIGRATIONS_TABLE)
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let applied: BTreeSet<i64> = if has_table {
        sqlx::query_scalar(APPLIED_VERSIONS)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    Ok(compare(&known_versions(), &applied))
}

/// Compares the applied versions with the known ones.
fn compare(known: &BTreeSet<i64>, applied: &BTreeSet<i64>) -> SchemaState {
    if applied.difference(known).next().is_some() {
        let highest = applied.last().copied().unwrap_or(0);
        return SchemaState::Ahead { found: highest };
    }
    if applied == known {
        return SchemaState::Current;
    }
    // The last version up to which every known migration is applied.
    let found = known
        .iter()
        .take_while(|v| applied.contains(v))
        .last()
        .copied()
        .unwrap_or(0);
    SchemaState::Behind { found }
}

/// Applies pending migrations; returns (version before, version after).
pub(crate) async fn migrate(url: &str) -> Result<(i64, i64), StoreError> {
    let mut conn = PgConnection::connect(url).await.map_err(from_sqlx)?;
    let before = state(&mut conn).await?;
    if let SchemaState::Ahead { .. } = before {
        before.check()?;
    }
    MIGRATOR.run(&mut conn).await.map_err(from_migrate)?;
    crate::chain::fill(&mut conn).await?;
    let after = state(&mut conn).await?;
    after.check()?;
    // Closing politely is best effort: the work is done either way.
    let _ = conn.close().await;
    Ok((before.version(), after.version()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[i64]) -> BTreeSet<i64> {
        v.iter().copied().collect()
    }

    #[test]
    fn compares_versions() {
        let known = set(&[1, 2, 3]);
        assert_eq!(compare(&known, &set(&[])), SchemaState::Behind { found: 0 });
        assert_eq!(
            compare(&known, &set(&[1, 2])),
            SchemaState::Behind { found: 2 }
        );
        assert_eq!(
            compare(&known, &set(&[1, 3])),
            SchemaState::Behind { found: 1 }
        );
        assert_eq!(compare(&known, &set(&[1, 2, 3])), SchemaState::Current);
        assert_eq!(
            compare(&known, &set(&[1, 2, 3, 4])),
            SchemaState::Ahead { found: 4 }
        );
    }

    #[test]
    fn the_embedded_migrations_define_the_required_version() {
        assert!(required_version() >= 1);
    }
}
