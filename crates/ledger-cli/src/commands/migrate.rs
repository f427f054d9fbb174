//! `ledger migrate`: applies the event log's migrations.

use serde::Serialize;

use crate::database::{self, Target};
use crate::output::{CliError, print_json};

/// Migrates `target` and prints `{"backend","from","to"}`.
pub async fn run(target: &Target) -> Result<(), CliError> {
    let (from, to) = database::migrate(target).await?;
    tracing::info!(backend = %target.backend, from, to, "migrated");
    print_json(&Migrated {
        backend: target.backend.name(),
        from,
        to,
    })
}

/// What `ledger migrate` prints.
#[derive(Serialize)]
struct Migrated {
    backend: &'static str,
    from: i64,
    to: i64,
}
