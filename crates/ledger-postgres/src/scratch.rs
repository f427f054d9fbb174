//! Scratch databases: a fresh database on a server, created for one run (a benchmark) and
//! dropped afterwards, so the run never touches a database that holds someone's ledger.

use ledger_core::StoreError;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use crate::error::from_sqlx;

/// A database this process created on a PostgreSQL server; [`drop_database`](Self::drop_database) removes it.
#[derive(Debug)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates an empty database `<prefix>_<uuid>` on the server `server_url` points at
    /// (connecting to the database it names, e.g. `postgres`). `prefix` is lowercase letters,
    /// digits and underscores.
    pub async fn create(server_url: &str, prefix: &str) -> Result<Self, StoreError> {
        let valid = prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::InvalidInput(format!(
                "a scratch database prefix is lowercase letters, digits and underscores, not {prefix:?}"
            )));
        }
        let name = format!("{prefix}_{}", Uuid::now_v7().simple());
        // The name is made here from checked characters: an identifier cannot be a bind parameter.
        execute(server_url, &format!("CREATE DATABASE \"{name}\"")).await?;
        Ok(Self {
            url: with_database(server_url, &name),
            server_url: server_url.to_string(),
            name,
        })
    }

    /// The new database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the new database (the server URL with its database name replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_database(self) -> Result<(), StoreError> {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        execute(&self.server_url, &sql).await
    }
}

/// Runs one statement on its own connection to `url`.
async fn execute(url: &str, sql: &str) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect(url).await.map_err(from_sqlx)?;
    let result = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(from_sqlx);
    let _ = conn.close().await;
    result
}

/// `url` with its database name (the path) replaced by `database`; the query is kept.
fn with_database(url: &str, database: &str) -> String {
    let (head, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let host_start = head.find("://").map_or(0, |i| i + 3);
    let path = head[host_start..]
        .find('/')
        .map_or(head.len(), |i| host_start + i);
    format!("{}/{database}{query}", &head[..path])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced() {
        for (url, want) in [
            ("postgres://u@h:5432/postgres", "postgres://u@h:5432/x"),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgresql://h", "postgresql://h/x"),
            ("postgres:///db?host=/run/pg", "postgres:///x?host=/run/pg"),
        ] {
            assert_eq!(with_database(url, "x"), want);
        }
    }
}
