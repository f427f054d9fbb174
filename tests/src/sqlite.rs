//! Throwaway SQLite databases: a `ledger.db` file in a temporary directory.

use std::path::PathBuf;

use tempfile::TempDir;

/// A temporary directory holding (or about to hold) `ledger.db`; removed when dropped.
pub struct TempDb {
    dir: TempDir,
}

impl TempDb {
    /// A fresh directory; the database file is created by whoever opens [`url`](Self::url).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ledger-test-")
            .tempdir()
            .expect("cannot create a temporary directory for the SQLite test database");
        Self { dir }
    }

    /// The database file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    /// The database's URL, as the store and the CLI take it.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
}

impl Default for TempDb {
    fn default() -> Self {
        Self::new()
    }
}
