//! Whether the database accepts writes: a server that is a standby (in recovery) or a database
//! whose sessions default to read-only refuses every append, which a read probe cannot see.
//!
//! Unlike SQLite, PostgreSQL keeps no poisoned connection to replace: the pool already drops
//! connections that fail, and the server's own state answers the question on every probe.

use sqlx::PgPool;

/// True when a new transaction on this connection could not write.
const READ_ONLY: &str =
    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'";

/// Why writes fail now, or `None` (also when the database does not answer: the read probe
/// reports that as unavailable).
pub(crate) async fn write_fault(pool: &PgPool) -> Option<String> {
    match sqlx::query_scalar::<_, bool>(READ_ONLY)
        .fetch_one(pool)
        .await
    {
        Ok(true) => Some(
            "database is read-only (a standby, or default_transaction_read_only is on)".to_string(),
        ),
        Ok(false) | Err(_) => None,
    }
}
