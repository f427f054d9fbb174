//! From a database URL to a backend: the only place that picks one.

use std::fmt;
use std::sync::Arc;

use ledger_core::{Baseline, EventStore, StoreError, StoreOptions};
use ledger_postgres::PgStore;
use ledger_projections::ProjectionStore;
use ledger_sqlite::SqliteStore;

use crate::output::CliError;

/// Everything the commands need from a backend: the event store and the bench baseline.
pub trait LedgerStore: EventStore + Baseline + 'static {}

impl<T: EventStore + Baseline + 'static> LedgerStore for T {}

/// The backend a URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite:...` or a plain file path.
    Sqlite,
}

impl Backend {
    /// The name printed in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A database URL resolved to a backend and the URL that backend understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Which backend.
    pub backend: Backend,
    /// The URL handed to it, unchanged (the SQLite backend takes plain paths too).
    pub url: String,
}

/// Resolves `url`: `postgres://`/`postgresql://` select PostgreSQL, `sqlite:...` or a plain
/// path SQLite; any other `scheme://` is refused.
pub fn resolve(url: &str) -> Result<Target, CliError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(CliError::bad_input(
            "invalid_database_url",
            "the database URL is empty: pass --database-url or set LEDGER_DATABASE_URL",
        ));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(Target {
            backend: Backend::Postgres,
            url: url.to_string(),
        });
    }
    if let Some(scheme) = foreign_scheme(url) {
        return Err(CliError::bad_input(
            "invalid_database_url",
            format!(
                "unsupported database URL scheme `{scheme}://`: use postgres://..., sqlite:... or a file path"
            ),
        ));
    }
    Ok(Target {
        backend: Backend::Sqlite,
        url: url.to_string(),
    })
}

/// The scheme of a `scheme://...` URL, if `url` looks like one.
fn foreign_scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    if scheme == "sqlite" {
        return None;
    }
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some(scheme)
}

/// An open store and the backend it runs on.
#[derive(Clone)]
pub struct Database {
    /// The backend.
    pub backend: Backend,
    /// The store.
    pub store: Arc<dyn LedgerStore>,
    /// The projections' tables in the same database.
    pub projections: Arc<dyn ProjectionStore>,
}

/// Opens the store `target` names (SQLite creates and migrates a missing file; both check
/// the schema version).
pub async fn open(target: &Target, options: StoreOptions) -> Result<Database, StoreError> {
    let (store, projections): (Arc<dyn LedgerStore>, Arc<dyn ProjectionStore>) =
        match target.backend {
            Backend::Postgres => {
                let store = PgStore::connect(&target.url, options).await?;
                let projections = Arc::new(store.projections());
                (Arc::new(store), projections)
            }
            Backend::Sqlite => {
                let store = SqliteStore::open(&target.url, options).await?;
                let projections = Arc::new(store.projections());
                (Arc::new(store), projections)
            }
        };
    Ok(Database {
        backend: target.backend,
        store,
        projections,
    })
}

/// Applies the migrations of `target`'s backend; returns the schema version before and after.
pub async fn migrate(target: &Target) -> Result<(i64, i64), StoreError> {
    match target.backend {
        Backend::Postgres => PgStore::migrate(&target.url).await,
        Backend::Sqlite => SqliteStore::migrate(&target.url).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(url: &str) -> (Backend, String) {
        let t = resolve(url).unwrap();
        (t.backend, t.url)
    }

    #[test]
    fn postgres_urls_select_postgres() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/ledger",
            "postgresql://u:p@db/ledger?sslmode=disable",
            "POSTGRES://host/db",
        ] {
            assert_eq!(backend(url), (Backend::Postgres, url.to_string()));
        }
    }

    #[test]
    fn sqlite_urls_and_paths_select_sqlite() {
        assert_eq!(
            backend("sqlite://ledger.db"),
            (Backend::Sqlite, "sqlite://ledger.db".into())
        );
        assert_eq!(
            backend("sqlite::memory:"),
            (Backend::Sqlite, "sqlite::memory:".into())
        );
        assert_eq!(
            backend("data/ledger.db"),
            (Backend::Sqlite, "data/ledger.db".into())
        );
        assert_eq!(
            backend("/var/lib/ledger.db"),
            (Backend::Sqlite, "/var/lib/ledger.db".into())
        );
        assert_eq!(
            backend(crate::args::DEFAULT_DATABASE_URL).0,
            Backend::Sqlite
        );
    }

    #[test]
    fn other_schemes_and_empty_urls_are_refused() {
        for url in ["mysql://root@db/x", "http://x/y.db", "", "  "] {
            let err = resolve(url).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert_eq!(err.to_json()["error"], "invalid_database_url");
        }
    }
}
