//! From a database URL to a backend: the only place that picks one, and the place that knows
//! how to name a database to a person (without its password) and the command that fixes it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use ledger_core::{
    Baseline, ChainLog, EventStore, KeyStore, LogReader, StoreError, StoreOptions, schema_message,
};
use ledger_postgres::PgStore;
use ledger_projector::{ProjectionStore, Projector, ProjectorOptions};
use ledger_read_models::Logged;
use ledger_sqlite::SqliteStore;

use crate::args::DEFAULT_DATABASE_URL;
use crate::output::CliError;

/// Everything the commands need from a backend: the event store, its hash chains, its key
/// table and the bench baseline.
pub trait LedgerStore: EventStore + LogReader + ChainLog + KeyStore + Baseline + 'static {}

impl<T: EventStore + LogReader + ChainLog + KeyStore + Baseline + 'static> LedgerStore for T {}

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
    /// Whether the URL was given (`--database-url` or `LEDGER_DATABASE_URL`), not the default.
    pub given: bool,
}

impl Target {
    /// The database file of a SQLite target (`None` for PostgreSQL or an in-memory database).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let rest = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))
            .unwrap_or(&self.url);
        let path = rest.split('?').next().unwrap_or("");
        (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
    }

    /// The URL without its password, safe to print.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Where the database is, for a person: `./ledger.db`, or the URL without its password.
    pub fn location(&self) -> String {
        match self.sqlite_file() {
            Some(path)
                if path.is_relative() && !path.starts_with(".") && !path.starts_with("..") =>
            {
                format!("./{}", path.display())
            }
            Some(path) => path.display().to_string(),
            None => self.redacted_url(),
        }
    }

    /// The complete `ledger` command that runs `subcommand` on this database.
    pub fn command(&self, subcommand: &str) -> String {
        format!("ledger {subcommand} --database-url {}", self.redacted_url())
    }

    /// The complete command that migrates this database.
    pub fn migrate_command(&self) -> String {
        self.command("migrate")
    }

    /// What to add to a printed command when the URL in it lost its password.
    fn password_note(&self) -> &'static str {
        if self.redacted_url() == self.url {
            ""
        } else {
            " (the password is left out: put it back in the URL or set PGPASSWORD)"
        }
    }

    /// This target's store error as the CLI reports it: a schema that is behind names the
    /// complete command that migrates this very database.
    pub fn error(&self, e: StoreError) -> CliError {
        match e {
            StoreError::SchemaMismatch { found, needed } if found < needed => CliError::BadInput {
                code: "schema_mismatch",
                message: schema_message(found, needed, Some(&self.migrate_command()))
                    + self.password_note(),
            },
            other => CliError::Store(other),
        }
    }
}

/// `url` without a password: none in the user info (`user:secret@`) nor in a `password=`
/// query parameter.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let (head, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    let authority = &head[scheme_end..authority_end];
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    let query = match query.strip_prefix('?') {
        Some(q) => {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| !p.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                String::new()
            } else {
                format!("?{}", kept.join("&"))
            }
        }
        None => String::new(),
    };
    format!(
        "{}{authority}{}{query}",
        &head[..scheme_end],
        &head[authority_end..]
    )
}

/// Resolves the database URL given (`None`: the default `sqlite://ledger.db`):
/// `postgres://`/`postgresql://` select PostgreSQL, `sqlite:...` or a plain path SQLite; any
/// other `scheme://` is refused.
pub fn resolve(given: Option<&str>) -> Result<Target, CliError> {
    let url = given.unwrap_or(DEFAULT_DATABASE_URL).trim();
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
            given: given.is_some(),
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
        given: given.is_some(),
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
    /// The PostgreSQL store, whose notifications of other processes go out in the background.
    postgres: Option<PgStore>,
}

impl Database {
    /// Waits (at most a second) until other processes have been told of this
    /// process's appends: PostgreSQL notifies them in the background after each commit, and
    /// a process that exits right after appending would take the last notification with it
    /// (their runners would find the events only at their next poll). Nothing to wait for on
    /// SQLite, where other processes watch the file.
    pub async fn flush_wakeups(&self) {
        if let Some(store) = &self.postgres {
            store.flush_wakeups().await;
        }
    }
}

impl Database {
    /// The projector of every read model over this database's log and tables.
    pub fn projector(&self, options: ProjectorOptions) -> Projector<Logged> {
        let log: Arc<dyn LogReader> = self.store.clone();
        Projector::new(log, self.projections.clone(), ledger_read_models::catalog())
            .with_options(options)
    }
}

/// Opens the store `target` names, creating and migrating a missing SQLite file (what `serve`,
/// `migrate` and `append` do); both backends check the schema version.
pub async fn open(target: &Target, options: StoreOptions) -> Result<Database, CliError> {
    let (store, projections, postgres): (Arc<dyn LedgerStore>, Arc<dyn ProjectionStore>, _) =
        match target.backend {
            Backend::Postgres => {
                let store = PgStore::connect(&target.url, options)
                    .await
                    .map_err(|e| target.error(e))?;
                let projections = Arc::new(store.projections());
                (Arc::new(store.clone()), projections, Some(store))
            }
            Backend::Sqlite => {
                let store = SqliteStore::open(&target.url, options)
                    .await
                    .map_err(|e| target.error(e))?;
                let projections = Arc::new(store.projections());
                (Arc::new(store), projections, None)
            }
        };
    Ok(Database {
        backend: target.backend,
        store,
        projections,
        postgres,
    })
}

/// Opens the store `target` names only if it exists: a missing SQLite file is bad input
/// (`no_ledger`), not a new empty ledger (what reads, rebuilds, workers and tokens do).
pub async fn open_existing(target: &Target, options: StoreOptions) -> Result<Database, CliError> {
    if let Some(file) = target.sqlite_file()
        && !file.exists()
    {
        let hint = if target.given {
            format!(
                "check the path, or create it with `{}`",
                target.migrate_command()
            )
        } else {
            "pass --database-url or run `ledger serve` first".to_string()
        };
        return Err(CliError::bad_input(
            "no_ledger",
            format!("no ledger at {}: {hint}", target.location()),
        ));
    }
    open(target, options).await
}

/// Applies the migrations of `target`'s backend; returns the schema version before and after.
pub async fn migrate(target: &Target) -> Result<(i64, i64), CliError> {
    let migrated = match target.backend {
        Backend::Postgres => PgStore::migrate(&target.url).await,
        Backend::Sqlite => SqliteStore::migrate(&target.url).await,
    };
    migrated.map_err(|e| target.error(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(url: &str) -> (Backend, String) {
        let t = resolve(Some(url)).unwrap();
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
        let default = resolve(None).unwrap();
        assert_eq!((default.backend, default.given), (Backend::Sqlite, false));
        assert_eq!(default.location(), "./ledger.db");
    }

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("postgres://u:secret@h:5432/db", "postgres://u@h:5432/db"),
            (
                "postgresql://u@h/db?sslmode=disable&password=secret",
                "postgresql://u@h/db?sslmode=disable",
            ),
            ("postgres://h/db?password=secret", "postgres://h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u@h/db"),
            ("postgres://h", "postgres://h"),
        ] {
            let t = resolve(Some(url)).unwrap();
            assert_eq!(t.redacted_url(), shown);
            assert_eq!(t.location(), shown);
            assert!(!t.migrate_command().contains("secret"));
        }
        let t = resolve(Some("postgres://u:secret@h/db")).unwrap();
        let err = t.error(StoreError::SchemaMismatch {
            found: 0,
            needed: 2,
        });
        assert_eq!(err.exit_code(), 2);
        let message = err.to_json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("run `ledger migrate --database-url postgres://u@h/db`"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
        let plain = resolve(Some("postgres://u@h/db")).unwrap();
        assert_eq!(
            plain.migrate_command(),
            "ledger migrate --database-url postgres://u@h/db"
        );
    }

    #[test]
    fn sqlite_files_and_locations() {
        let file = |url: &str| resolve(Some(url)).unwrap().sqlite_file();
        assert_eq!(file("sqlite://data/l.db"), Some(PathBuf::from("data/l.db")));
        assert_eq!(
            file("/var/lib/l.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/l.db"))
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://u@h/db"), None);
        assert_eq!(
            resolve(Some("sqlite:///tmp/x.db")).unwrap().location(),
            "/tmp/x.db"
        );
        assert_eq!(resolve(Some("../x.db")).unwrap().location(), "../x.db");
    }

    #[test]
    fn other_schemes_and_empty_urls_are_refused() {
        for url in ["mysql://root@db/x", "http://x/y.db", "", "  "] {
            let err = resolve(Some(url)).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert_eq!(err.to_json()["error"], "invalid_database_url");
        }
    }
}
