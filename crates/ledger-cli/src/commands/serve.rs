//! `ledger serve`: the HTTP command API on the selected backend, until SIGTERM or SIGINT.
//!
//! The order matters to a person who gets it wrong: the configuration is checked first, then
//! the port is bound, and only then is the database opened (or created) and the admin token
//! settled, so a bad flag or a busy port leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger_api::{
    AdminTokenError, AdminTokenOrigin, AdminTokenSource, ApiConfig, AppState, ConnectionLimits,
    Server,
};
use ledger_core::{ChainLog, EventStore, KeyStore, LogReader, StoreOptions};
use ledger_domain::Policy;
use ledger_projector::{ProjectorOptions, Signal, SignalingStore};
use serde::Serialize;

use crate::args::ServeArgs;
use crate::database::{self, Backend, Target};
use crate::output::{CliError, print_json};

/// The variable holding the admin token.
pub const ADMIN_TOKEN_VAR: &str = "LEDGER_ADMIN_TOKEN";

/// The suffix of a generated admin token's file: `<database>.admin-token`.
const TOKEN_FILE_SUFFIX: &str = ".admin-token";

/// The stem of the token file when the database has no name to use (in-memory SQLite).
const FALLBACK_TOKEN_STEM: &str = "ledger";

/// What `ledger serve` prints once it listens.
#[derive(Serialize)]
struct Listening {
    listening: String,
    backend: &'static str,
    /// `env`, `file`, `generated` or `stored` (the database already held admin tokens).
    admin_token: AdminTokenOrigin,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token_file: Option<String>,
    /// `in_process` (runners run here) or `external` (`--no-projections`).
    projections: &'static str,
}

/// Checks the configuration, binds the port, opens the store, settles the admin token and
/// serves until a shutdown signal.
pub async fn run(target: &Target, args: ServeArgs) -> Result<(), CliError> {
    let source = admin_token_source(target, &args)?;
    let config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        policy: policy(&args)?,
        request_timeout: args.request_timeout.into(),
        body_timeout: args.body_timeout.into(),
        metrics_token: args.metrics_token.clone().filter(|t| !t.trim().is_empty()),
        state_cache: args.state_cache,
        session_ttl: args.session_ttl.into(),
        progress_link_ttl: args.progress_link_ttl.into(),
        public_url: args.public_url.clone(),
        ..ApiConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| cannot_listen(&args, &e))?;
    if args.migrate {
        let (from, to) = database::migrate(target).await?;
        tracing::info!(from, to, "migrated before serving");
    }
    let options = StoreOptions {
        acquire_timeout: args.db_acquire_timeout.into(),
        group: args.group.limits(),
        ..StoreOptions::default()
    };
    let db = database::open(target, options).await?;
    if let Some(reason) = db.store.write_fault().await {
        tracing::warn!(%reason, "the database cannot be written; writes answer 503 until it can");
    }
    let settled = ledger_api::settle_admin_token(db.store.as_ref(), source)
        .await
        .map_err(|e| admin_token_error(target, e))?;
    if let (Some(file), AdminTokenOrigin::Generated) = (&settled.file, settled.origin) {
        tracing::warn!(file = %file.display(), "generated an admin token (mode 0600)");
    } else if settled.origin == AdminTokenOrigin::Stored {
        let issue = target.command("token issue --role admin --name NAME");
        tracing::warn!(
            "no admin token given and the database already holds admin tokens: use one of them, or issue one with `{issue}`"
        );
    }
    // This process's appends wake its projection runners at once (and those of other
    // processes soon after each commit).
    let signal = Signal::new();
    let closing = db.clone();
    let projector = db
        .projector(ProjectorOptions::default())
        .with_signal(signal.clone());
    // Keys of erased tenants that came back with a restored key table are destroyed again; the
    // scan reads the whole log, so it runs beside the server rather than before it.
    let erasures = db.clone();
    tokio::spawn(async move {
        let vault = super::vault(&erasures);
        match ledger_commands::reapply_erasures(erasures.store.as_ref(), &vault).await {
            Ok(0) => {}
            Ok(reapplied) => {
                tracing::warn!(reapplied, "destroyed keys of erased tenants that were back");
            }
            Err(e) => tracing::error!(
                error = &e as &dyn std::error::Error,
                "erasures could not be re-applied from the log"
            ),
        }
    });
    let keys: Arc<dyn KeyStore> = db.store.clone();
    let log: Arc<dyn LogReader> = db.store.clone();
    let chains: Arc<dyn ChainLog> = db.store.clone();
    let inner: Arc<dyn EventStore> = db.store;
    let store: Arc<dyn EventStore> = Arc::new(SignalingStore::new(inner, signal));
    let state = match &settled.unstored {
        Some(token) => AppState::new(store, token, config),
        None => AppState::with_stored_admin_tokens(store, config),
    }
    .with_projections(projector.clone())
    .with_log(log)
    .with_chains(chains)
    .with_keys(keys);
    let server = Server::from_listener(listener, state)
        .map_err(|e| CliError::Internal(anyhow::Error::new(e)))?
        .with_limits(connection_limits(&args));
    // Listen for SIGTERM/SIGINT before saying we are ready, so an early signal is not lost.
    let shutdown = ledger_api::shutdown_signal();
    print_json(&Listening {
        listening: server.local_addr().to_string(),
        backend: target.backend.name(),
        admin_token: settled.origin,
        admin_token_file: settled.file.map(|f| f.display().to_string()),
        projections: if args.no_projections {
            "external"
        } else {
            "in_process"
        },
    })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runners = (!args.no_projections).then(|| {
        let mut stopped = stopped;
        tokio::spawn(async move {
            let names = projector.catalog().names();
            let run = projector.run(&names, async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
            if let Err(e) = run.await {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "the projection runners cannot start"
                );
            }
        })
    });
    server.run(shutdown).await;
    let _ = stop.send(true);
    if let Some(runners) = runners {
        let _ = runners.await;
    }
    closing.flush_wakeups().await;
    Ok(())
}

/// Descriptors kept free for the database, the listener and the log when the connection limit
/// is derived from the open-file limit (half of it when that is small).
const RESERVED_FDS: u64 = 128;

/// The connection bounds from the flags.
fn connection_limits(args: &ServeArgs) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: args.max_connections.map_or_else(
            || default_max_connections(open_file_limit()),
            |n| n as usize,
        ),
        idle_timeout: args.idle_timeout.into(),
        header_timeout: args.header_timeout.into(),
        shutdown_grace: args.shutdown_grace.into(),
    }
}

/// The connection limit without `--max-connections`: the default, lowered so that connections
/// cannot use up an `open_files` limit.
fn default_max_connections(open_files: Option<u64>) -> usize {
    let default = ConnectionLimits::DEFAULT.max_connections;
    let Some(limit) = open_files else {
        return default;
    };
    let room = limit.saturating_sub(RESERVED_FDS.min(limit / 2)).max(1);
    usize::try_from(room).map_or(default, |room| room.min(default))
}

/// This process's soft limit on open files (`None`: unlimited or unknown).
fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The onboarding durations of `--lock-ttl` and `--reveal-window`.
fn policy(args: &ServeArgs) -> Result<Policy, CliError> {
    let convert = |flag: &str, d: std::time::Duration| {
        chrono::Duration::from_std(d)
            .map_err(|_| CliError::bad_input("invalid_duration", format!("{flag} is too long")))
    };
    Ok(Policy {
        lock_ttl: convert("--lock-ttl", args.lock_ttl)?,
        api_key_reveal_window: convert("--reveal-window", args.reveal_window)?,
    })
}

/// A port that cannot be bound: a failure of the environment (exit 1), said plainly.
fn cannot_listen(args: &ServeArgs, e: &std::io::Error) -> CliError {
    let addr = args.listen;
    let message = if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "cannot listen on {addr}: another process (another `ledger serve`?) already listens there; stop it, or pass --listen with another port (port 0 picks a free one)"
        )
    } else {
        format!("cannot listen on {addr}: {e}; pass --listen with another address")
    };
    CliError::Failed {
        code: "cannot_listen",
        message,
    }
}

/// Where the admin token comes from: the environment, `--admin-token-file`, or the default file.
fn admin_token_source(target: &Target, args: &ServeArgs) -> Result<AdminTokenSource, CliError> {
    let from_env = std::env::var(ADMIN_TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty());
    match (from_env, &args.admin_token_file) {
        (Some(_), Some(_)) => Err(CliError::bad_input(
            "conflicting_admin_token",
            format!("both {ADMIN_TOKEN_VAR} and --admin-token-file are set: use one of them"),
        )),
        (Some(token), None) => Ok(AdminTokenSource::Env(token.trim().to_string())),
        (None, Some(path)) => Ok(AdminTokenSource::File(absolute(path))),
        (None, None) => Ok(AdminTokenSource::Default(absolute(&default_token_file(
            target,
        )))),
    }
}

/// An admin token that could not be settled, as the CLI reports it.
fn admin_token_error(target: &Target, e: AdminTokenError) -> CliError {
    match e {
        AdminTokenError::File(e) => CliError::bad_input("admin_token_file", e.to_string()),
        AdminTokenError::Registry(ledger_api::token_registry::TokenError::Store(e)) => {
            target.error(e)
        }
        AdminTokenError::Registry(e) => CliError::Failed {
            code: e.code(),
            message: e.to_string(),
        },
    }
}

/// Where a generated admin token goes: `<file>.admin-token` beside a SQLite file, else
/// `./<database name>.admin-token` in the working directory.
fn default_token_file(target: &Target) -> PathBuf {
    if let Some(db) = target.sqlite_file() {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(TOKEN_FILE_SUFFIX);
        return db.with_file_name(name);
    }
    let stem = match target.backend {
        Backend::Postgres => postgres_database(&target.url),
        Backend::Sqlite => None,
    };
    PathBuf::from(format!(
        "{}{TOKEN_FILE_SUFFIX}",
        stem.unwrap_or(FALLBACK_TOKEN_STEM)
    ))
}

/// The database name of a PostgreSQL URL, when it is a plain file-name-safe word.
fn postgres_database(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let path = rest.split('?').next()?;
    let name = &path[path.find('/')? + 1..];
    let safe = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    safe.then_some(name)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        database::resolve(Some(url)).unwrap()
    }

    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        let default = ConnectionLimits::DEFAULT.max_connections;
        assert_eq!(default_max_connections(None), default);
        assert_eq!(default_max_connections(Some(1 << 20)), default);
        assert_eq!(default_max_connections(Some(1024)), 1024 - 128);
        assert_eq!(default_max_connections(Some(100)), 50);
        assert_eq!(default_max_connections(Some(1)), 1);
    }

    #[test]
    fn generated_tokens_are_named_after_the_database() {
        assert_eq!(
            default_token_file(&target("sqlite://data/ledger.db")),
            PathBuf::from("data/ledger.db.admin-token")
        );
        assert_eq!(
            default_token_file(&target("/var/lib/l.db?mode=rwc")),
            PathBuf::from("/var/lib/l.db.admin-token")
        );
        assert_eq!(
            default_token_file(&target("sqlite::memory:")),
            PathBuf::from("ledger.admin-token")
        );
        assert_eq!(
            default_token_file(&target("postgres://u:p@h:5432/shop_db?sslmode=disable")),
            PathBuf::from("shop_db.admin-token")
        );
        assert_eq!(
            default_token_file(&target("postgres://u@h")),
            PathBuf::from("ledger.admin-token")
        );
        assert_eq!(
            default_token_file(&database::resolve(None).unwrap()),
            PathBuf::from("ledger.db.admin-token")
        );
    }
}
