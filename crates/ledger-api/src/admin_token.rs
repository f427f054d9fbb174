//! The admin token's file: read one a person wrote, or create one with a fresh token (mode 0600).

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::auth::generate_admin_token;

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

/// The token in `path` if the file exists, else a fresh token written to a new file that only
/// its owner may read (0600). Returns the token and whether the file was created.
pub fn load_or_create_admin_token_file(path: &Path) -> Result<(String, bool), TokenFileError> {
    let write_err = |source| TokenFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let token = generate_admin_token();
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
            Ok((token, true))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            read_admin_token_file(path).map(|token| (token, false))
        }
        Err(e) => Err(write_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        let (first, created) = load_or_create_admin_token_file(&path).unwrap();
        assert!(created);
        let (again, created) = load_or_create_admin_token_file(&path).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            read_admin_token_file(&path),
            Err(TokenFileError::Empty { .. })
        ));
    }
}
