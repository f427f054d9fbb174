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
];

/// Maps a `sqlx` error to the store's error: unreachable or overloaded database ->
/// `Unavailable`, anything else -> `Backend`.
pub(crate) fn from_sqlx(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if UNAVAILABLE_CODES.contains(&code) || code.starts_with("08") {
                StoreError::Unavailable(db.message().to_string())
            } else {
                StoreError::Backend(format!("{} (SQLSTATE {code})", db.message()))
            }
        }
        _ => StoreError::Backend(err.to_string()),
    }
}

/// Maps a migration failure to the store's error.
pub(crate) fn from_migrate(err: MigrateError) -> StoreError {
    match err {
        MigrateError::Execute(e) => from_sqlx(e),
        MigrateError::ExecuteMigration(e, version) => match from_sqlx(e) {
            StoreError::Backend(text) => {
                StoreError::Backend(format!("while applying migration {version}: {text}"))
            }
            other => other,
        },
        other => StoreError::Backend(other.to_string()),
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
}
