//! sqlx errors to [`StoreError`]: nothing of sqlx leaves this crate.

use ledger_core::StoreError;
use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;

use crate::health::Fault;

/// SQLite's primary result codes that mean "busy or unreachable, retry later".
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_TOOBIG: i32 = 18;

/// Maps a sqlx error: pool timeouts, I/O failures and a database still locked after the busy
/// timeout are `Unavailable`, anything else is `Backend`.
pub(crate) fn store_err(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => primary_code(db.code().as_deref()).is_some_and(|code| {
            matches!(
                code,
                SQLITE_BUSY
                    | SQLITE_LOCKED
                    | SQLITE_NOMEM
                    | SQLITE_READONLY
                    | SQLITE_IOERR
                    | SQLITE_FULL
                    | SQLITE_CANTOPEN
            )
        }),
        _ => false,
    };
    if unavailable {
        StoreError::unavailable_with("SQLite could not run a statement", error)
    } else {
        StoreError::backend_with("SQLite failed a statement", error)
    }
}

/// Maps a migration error; database failures inside it are mapped like any other.
pub(crate) fn migrate_err(error: MigrateError) -> StoreError {
    match error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => store_err(e),
        other => StoreError::backend_with("the migrations could not run", other),
    }
}

/// True for a violated UNIQUE or PRIMARY KEY constraint.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

/// True for a violated NOT NULL constraint.
pub(crate) fn is_not_null_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == ErrorKind::NotNullViolation)
}

/// True for a string or blob larger than SQLite allows.
pub(crate) fn is_too_big(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if primary_code(db.code().as_deref()) == Some(SQLITE_TOOBIG))
}

/// What a failed write ran into.
pub(crate) fn fault_of(error: &sqlx::Error) -> Fault {
    match error {
        sqlx::Error::Database(db) => match primary_code(db.code().as_deref()) {
            Some(SQLITE_FULL) => Fault::Full,
            Some(SQLITE_READONLY) => Fault::ReadOnly,
            Some(SQLITE_IOERR) => Fault::Io,
            Some(SQLITE_CANTOPEN) => Fault::CantOpen,
            Some(SQLITE_BUSY | SQLITE_LOCKED) => Fault::Locked,
            _ => Fault::Other,
        },
        sqlx::Error::Io(_) => Fault::Io,
        sqlx::Error::PoolTimedOut => Fault::Locked,
        _ => Fault::Other,
    }
}

/// The primary result code (low byte) of SQLite's extended result code.
fn primary_code(code: Option<&str>) -> Option<i32> {
    code?.parse::<i32>().ok().map(|c| c & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_codes_reduce_to_primary() {
        assert_eq!(primary_code(Some("517")), Some(SQLITE_BUSY));
        assert_eq!(primary_code(Some("5")), Some(SQLITE_BUSY));
        assert_eq!(primary_code(Some("2067")), Some(19));
        assert_eq!(primary_code(None), None);
    }

    #[test]
    fn pool_timeouts_are_unavailable() {
        assert_eq!(store_err(sqlx::Error::PoolTimedOut).code(), "unavailable");
        assert_eq!(store_err(sqlx::Error::RowNotFound).code(), "internal");
    }
}
