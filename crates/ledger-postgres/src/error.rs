//! Turning `sqlx` errors into [`StoreError`]s; no `sqlx::Error` leaves this crate.

use ledger_core::StoreError;
use sqlx::migrate::MigrateError;

/// SQLSTATE codes that mean "the database cannot serve us right now".
const UNAVAILABLE_CODES: &[&str] = &[
    "53300", // too_many_connections
    "53000", // insufficient_resources
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53100", // disk_full
    "25006", // read_only_sql_transaction: a standby, or a database set read-only
];

/// Maps a `sqlx` error to the store's error, keeping it as the cause: unreachable or
/// overloaded database -> `Unavailable`, anything else -> `Backend`.
pub(crate) fn from_sqlx(err: sqlx::Error) -> StoreError {
    let message = match &err {
        sqlx::Error::PoolTimedOut => {
            "no database connection became free or could be opened in time"
        }
        sqlx::Error::PoolClosed => "the connection pool is closed",
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "the connection to the database failed",
        sqlx::Error::WorkerCrashed => "the database driver's worker stopped",
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default().into_owned();
            return if UNAVAILABLE_CODES.contains(&code.as_str()) || code.starts_with("08") {
                StoreError::unavailable_with(
                    format!("the server refused with SQLSTATE {code}"),
                    err,
                )
            } else {
                StoreError::backend_with(format!("a statement failed with SQLSTATE {code}"), err)
            };
        }
        _ => return StoreError::backend_with("the database driver failed", err),
    };
    StoreError::unavailable_with(message, err)
}

/// Maps a migration failure to the store's error.
pub(crate) fn from_migrate(err: MigrateError) -> StoreError {
    match err {
        MigrateError::Execute(e) => from_sqlx(e),
        MigrateError::ExecuteMigration(e, version) => match from_sqlx(e) {
            StoreError::Backend { message, source } => StoreError::Backend {
                message: format!("{message} while applying migration {version}"),
                source,
            },
            other => other,
        },
        other => StoreError::backend_with("the migrations could not run", other),
    }
}

/// Whether `err` is a transaction aborted by a deadlock or a serialization failure, which a
/// retry of the whole transaction resolves.
pub(crate) fn is_retryable(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    matches!(db.code().as_deref(), Some("40P01" | "40001"))
}

/// The unique constraint `err` violated, if it is a unique violation.
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    let db = err.as_database_error()?;
    if db.is_unique_violation() {
        db.constraint()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        assert_eq!(from_sqlx(sqlx::Error::PoolTimedOut).code(), "unavailable");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(from_sqlx(sqlx::Error::Io(refused)).code(), "unavailable");
        assert_eq!(from_sqlx(sqlx::Error::RowNotFound).code(), "internal");
    }

    #[test]
    fn the_driver_error_stays_the_cause() {
        use std::error::Error;
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = from_sqlx(sqlx::Error::Io(refused));
        assert_eq!(
            err.to_string(),
            "the database is unavailable: the connection to the database failed"
        );
        let cause = err.source().expect("the sqlx error is the cause");
        assert!(matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Io(_))
        ));
        let io = cause.source().expect("the I/O error under it");
        assert_eq!(
            io.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    }
}
