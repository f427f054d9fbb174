//! The admin token a server starts with: from the environment, a file a person wrote, or
//! generated into a 0600 file on a database's first start; stored in the admin token registry
//! so that every server sharing the database accepts it.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use ledger_core::{EventStore, StoreError};
use serde::Serialize;
use serde_json::json;

use crate::auth::generate_admin_token;
use crate::token_registry::{self, TokenError, TokenInfo};

/// Why the admin token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read the admin token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error(
        "the admin token file {path} is empty: put the token in it, or remove it to have one generated"
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be written.
    #[error("cannot write the admin token file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the admin token from `path` (surrounding whitespace is ignored).
pub fn read_admin_token_file(path: &Path) -> Result<String, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// Writes `token` to a new file at `path` that only its owner may read (0600); returns false,
/// writing nothing, when the file exists already.
fn create_admin_token_file(path: &Path, token: &str) -> Result<bool, TokenFileError> {
    let write_err = |source| TokenFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(write_err)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(write_err(e)),
    }
}

/// Where the admin token a server starts with comes from.
#[derive(Clone, Debug)]
pub enum AdminTokenSource {
    /// Given in the environment (`LEDGER_ADMIN_TOKEN`).
    Env(String),
    /// A file a person wrote (`--admin-token-file`).
    File(PathBuf),
    /// Neither: this file if it exists, else a token generated into it on the database's
    /// first start (when the registry holds no active admin token yet).
    Default(PathBuf),
}

/// Where a server's admin token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminTokenOrigin {
    /// `LEDGER_ADMIN_TOKEN`.
    Env,
    /// A token file: `--admin-token-file`, or the default file of an earlier first start.
    File,
    /// Generated on the database's first start into the default file.
    Generated,
    /// None of its own: the registry already held admin tokens (issued by `ledger token issue`
    /// or another server's first start).
    Stored,
}

/// How a server's admin token was settled.
#[derive(Clone, Debug)]
pub struct AdminTokenStart {
    /// Where it came from.
    pub origin: AdminTokenOrigin,
    /// The file the token was read from or generated into.
    pub file: Option<PathBuf>,
    /// The registry's facts of the token the server started with (`revoked` when it no
    /// longer works).
    pub token: Option<TokenInfo>,
    /// A given token the registry could not store because the database cannot be written
    /// now (read-only, disk full): this server accepts it on its own until a restart stores it.
    pub unstored: Option<String>,
}

/// Why a server's admin token could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The token file could not be used.
    #[error(transparent)]
    File(#[from] TokenFileError),
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] TokenError),
}

/// Settles the admin token of a server starting on `store`: a given token (environment or
/// file) is stored in the registry under `bootstrap` unless its hash is there already; with
/// none, the default file is read if it exists, else a token is generated into it if the
/// registry holds no active admin token. A given token that was revoked stays revoked (and
/// is reported so).
pub async fn settle_admin_token(
    store: &dyn EventStore,
    source: AdminTokenSource,
) -> Result<AdminTokenStart, AdminTokenError> {
    let meta = json!({"actor": "serve"});
    let (origin, token, file) = match source {
        AdminTokenSource::Env(token) => (AdminTokenOrigin::Env, token, None),
        AdminTokenSource::File(path) => {
            let token = read_admin_token_file(&path)?;
            (AdminTokenOrigin::File, token, Some(path))
        }
        AdminTokenSource::Default(path) if path.exists() => {
            let token = read_admin_token_file(&path)?;
            (AdminTokenOrigin::File, token, Some(path))
        }
        AdminTokenSource::Default(path) => return first_start(store, path, meta).await,
    };
    let info = match token_registry::register(store, &token, meta).await {
        Ok(info) => info,
        Err(TokenError::Store(e @ StoreError::Unavailable { .. })) => {
            tracing::warn!(
                ?origin,
                error = &e as &dyn std::error::Error,
                "the admin token could not be stored (the database cannot be written): this server accepts it, other servers will once a restart stores it"
            );
            return Ok(AdminTokenStart {
                origin,
                file,
                token: None,
                unstored: Some(token),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if info.revoked {
        tracing::warn!(
            ?origin,
            name = %info.name,
            token_id = %info.token_id,
            "the admin token this server was started with was revoked: it is refused"
        );
    }
    Ok(AdminTokenStart {
        origin,
        file,
        token: Some(info),
        unstored: None,
    })
}

/// No token given and no file: generate one into `path` if the registry has no active one.
async fn first_start(
    store: &dyn EventStore,
    path: PathBuf,
    meta: serde_json::Value,
) -> Result<AdminTokenStart, AdminTokenError> {
    let stored = AdminTokenStart {
        origin: AdminTokenOrigin::Stored,
        file: None,
        token: None,
        unstored: None,
    };
    if token_registry::load(store)
        .await
        .map_err(TokenError::from)?
        .has_active()
    {
        return Ok(stored);
    }
    let token = generate_admin_token();
    if !create_admin_token_file(&path, &token)? {
        // Another server in this directory wrote it first: use that one.
        return Box::pin(settle_admin_token(store, AdminTokenSource::File(path))).await;
    }
    match token_registry::register_first(store, &token, meta).await {
        Ok(Some(info)) => Ok(AdminTokenStart {
            origin: AdminTokenOrigin::Generated,
            file: Some(path),
            token: Some(info),
            unstored: None,
        }),
        // Another server stored the first token meanwhile: this one is not valid, drop its file.
        Ok(None) => {
            let _ = std::fs::remove_file(&path);
            Ok(stored)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use ledger_memory::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn a_first_start_generates_once_then_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        let store = MemoryStore::default();
        let first = settle_admin_token(&store, AdminTokenSource::Default(path.clone()))
            .await
            .unwrap();
        assert_eq!(
            (first.origin, first.file.as_deref()),
            (AdminTokenOrigin::Generated, Some(path.as_path()))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = settle_admin_token(&store, AdminTokenSource::Default(path.clone()))
            .await
            .unwrap();
        assert_eq!(again.origin, AdminTokenOrigin::File);
        assert_eq!(again.token, first.token);
        // Another directory on the same database: no token of its own, no file.
        let elsewhere = dir.path().join("elsewhere-token");
        let other = settle_admin_token(&store, AdminTokenSource::Default(elsewhere.clone()))
            .await
            .unwrap();
        assert_eq!(other.origin, AdminTokenOrigin::Stored);
        assert!(!elsewhere.exists());
        let env = settle_admin_token(&store, AdminTokenSource::Env("from-env".into()))
            .await
            .unwrap();
        assert_eq!(env.token.unwrap().name, "bootstrap-2");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            read_admin_token_file(&path),
            Err(TokenFileError::Empty { .. })
        ));
    }
}
