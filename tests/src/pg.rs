//! Throwaway PostgreSQL databases: one per test, always dropped afterwards.
//!
//! The server is the one at `LEDGER_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each test gets a fresh database
//! `ledger_test_<uuid>`, so tests run in parallel without seeing each other's events. A server
//! that cannot be reached fails the test: the suite never skips a backend.

use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};

use futures::FutureExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The variable that names the PostgreSQL server the tests use.
pub const URL_VAR: &str = "LEDGER_TEST_DATABASE_URL";

/// The server used when [`URL_VAR`] is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the server's maintenance database, where test databases are created and dropped.
pub fn base_url() -> String {
    std::env::var(URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// `base` with its database name replaced by `database` (any `?query` is kept).
pub fn database_url(base: &str, database: &str) -> String {
    let (head, query) = match base.find('?') {
        Some(i) => base.split_at(i),
        None => (base, ""),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let path_start = head[authority_start..]
        .find('/')
        .map_or(head.len(), |i| authority_start + i);
    format!("{}/{database}{query}", &head[..path_start])
}

/// A connection to the maintenance database; panics with how to start the server if there is none.
pub async fn admin_connection() -> PgConnection {
    let url = base_url();
    match PgConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "cannot reach the PostgreSQL server of the tests at {url}: {e}\n\
             The suite needs one (it never skips a backend). Start the local cluster with\n    \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point {URL_VAR} at another server (a superuser that may create databases)."
        ),
    }
}

/// Creates an empty database with a fresh `ledger_test_<uuid>` name; returns its name.
pub async fn create_database() -> String {
    let name = format!("ledger_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = admin_connection().await;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    let _ = admin.close().await;
    name
}

/// Drops a test database, closing whatever connections are still open to it.
pub async fn drop_database(name: &str) {
    let mut admin = admin_connection().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("cannot drop the test database {name}: {e}"));
    let _ = admin.close().await;
}

/// Runs `body` with the URL of a fresh database (migrated with `PgStore::migrate` when
/// `migrate` is true), then drops the database, whether or not `body` panicked.
///
/// A panic of the body (or of the migration) is caught, the database is dropped, and the panic
/// is resumed, so the test fails with the body's own message and leaves nothing behind.
/// (`catch_unwind` rather than `tokio::spawn`: the future of `PgStore::migrate` is not
/// provably `Send` for every lifetime, which `spawn` requires.)
pub async fn with_database<F, Fut>(migrate: bool, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = create_database().await;
    let url = database_url(&base_url(), &name);
    let outcome = AssertUnwindSafe(async move {
        if migrate {
            ledger_postgres::PgStore::migrate(&url)
                .await
                .unwrap_or_else(|e| panic!("migrating the test database failed: {e}"));
        }
        body(url).await
    })
    .catch_unwind()
    .await;
    drop_database(&name).await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
