//! `ledger serve`: the HTTP command API on the selected backend, until SIGTERM or SIGINT.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger_api::{ApiConfig, AppState, Server};
use ledger_core::{EventStore, StoreOptions};
use ledger_projections::{Kind, Projector, Signal, SignalingStore};
use serde::Serialize;

use crate::args::ServeArgs;
use crate::database::{self, Backend, Target};
use crate::output::{CliError, print_json};

/// The variable holding the admin token.
pub const ADMIN_TOKEN_VAR: &str = "LEDGER_ADMIN_TOKEN";

/// The file name of a generated admin token when there is no database file to put it beside.
const DEFAULT_TOKEN_FILE: &str = "ledger-admin-token";

/// What `ledger serve` prints once it listens.
#[derive(Serialize)]
struct Listening {
    listening: String,
    backend: &'static str,
    admin_token: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token_file: Option<String>,
    /// `in_process` (runners run here) or `external` (`--no-projections`).
    projections: &'static str,
}

/// Opens the store, resolves the admin token, listens and serves until a shutdown signal.
pub async fn run(target: &Target, args: ServeArgs) -> Result<(), CliError> {
    let db = database::open(target, StoreOptions::default()).await?;
    let (admin_token, source, file) = admin_token(target, &args)?;
    // This process's appends wake its projection runners at once.
    let signal = Signal::new();
    let inner: Arc<dyn EventStore> = db.store;
    let store: Arc<dyn EventStore> = Arc::new(SignalingStore::new(inner, signal.clone()));
    let projector = Projector::new(store.clone(), db.projections).with_signal(signal);
    let config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        metrics_token: args.metrics_token.clone().filter(|t| !t.trim().is_empty()),
        ..ApiConfig::default()
    };
    let state = AppState::new(store, &admin_token, config).with_projections(projector.clone());
    let server = Server::bind(args.listen, state)
        .await
        .map_err(|e| CliError::bad_input("cannot_listen", e.to_string()))?;
    // Listen for SIGTERM/SIGINT before saying we are ready, so an early signal is not lost.
    let shutdown = ledger_api::shutdown_signal();
    print_json(&Listening {
        listening: server.local_addr().to_string(),
        backend: target.backend.name(),
        admin_token: source,
        admin_token_file: file.map(|f| f.display().to_string()),
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
            projector
                .run(&Kind::ALL, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        })
    });
    let served = server
        .run(shutdown)
        .await
        .map_err(|e| CliError::Internal(anyhow::Error::new(e)));
    let _ = stop.send(true);
    if let Some(runners) = runners {
        let _ = runners.await;
    }
    served
}

/// The admin token, where it came from (`env`, `file`, `generated`) and its file.
fn admin_token(
    target: &Target,
    args: &ServeArgs,
) -> Result<(String, &'static str, Option<PathBuf>), CliError> {
    let from_env = std::env::var(ADMIN_TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let file_err =
        |e: ledger_api::TokenFileError| CliError::bad_input("admin_token_file", e.to_string());
    match (from_env, &args.admin_token_file) {
        (Some(_), Some(_)) => Err(CliError::bad_input(
            "conflicting_admin_token",
            format!("both {ADMIN_TOKEN_VAR} and --admin-token-file are set: use one of them"),
        )),
        (Some(token), None) => Ok((token.trim().to_string(), "env", None)),
        (None, Some(path)) => {
            let token = ledger_api::read_admin_token_file(path).map_err(file_err)?;
            Ok((token, "file", Some(absolute(path))))
        }
        (None, None) => {
            let path = default_token_file(target);
            let (token, created) =
                ledger_api::load_or_create_admin_token_file(&path).map_err(file_err)?;
            let path = absolute(&path);
            if created {
                tracing::warn!(path = %path.display(), "generated an admin token (mode 0600)");
            }
            Ok((
                token,
                if created { "generated" } else { "file" },
                Some(path),
            ))
        }
    }
}

/// Where a generated admin token goes: beside the SQLite file, else the working directory.
fn default_token_file(target: &Target) -> PathBuf {
    match (target.backend, sqlite_file(&target.url)) {
        (Backend::Sqlite, Some(db)) => {
            let mut name = db.file_name().unwrap_or_default().to_os_string();
            name.push(".admin-token");
            db.with_file_name(name)
        }
        _ => PathBuf::from(DEFAULT_TOKEN_FILE),
    }
}

/// The database file of a SQLite URL or path (`None` for an in-memory database).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        database::resolve(url).unwrap()
    }

    #[test]
    fn generated_tokens_go_beside_the_sqlite_file() {
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
            PathBuf::from(DEFAULT_TOKEN_FILE)
        );
        assert_eq!(
            default_token_file(&target("postgres://u@h/db")),
            PathBuf::from(DEFAULT_TOKEN_FILE)
        );
    }
}
