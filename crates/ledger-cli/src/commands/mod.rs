//! One module per subcommand; [`run`] dispatches. A new subcommand is a variant in
//! `args::Command`, a module here and one line in [`run`].

mod append;
pub(crate) mod audit;
mod audit_events;
mod erase;
mod export;
mod import;
mod migrate;
mod project;
mod read;
pub(crate) mod rebuild;
mod serve;
mod token;
pub(crate) mod verify;

use std::sync::Arc;

use ledger_commands::{SealedLog, SealedStore, Vault};
use ledger_core::{EventStore, LogReader, StoreOptions};

use crate::args::{Cli, Command};
use crate::database::{self, Database, Target};
use crate::output::CliError;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let target = database::resolve(cli.database_url.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::run(&target, args).await,
        Command::Migrate => migrate::run(&target).await,
        Command::Append(args) => append::run(&target, args).await,
        Command::Read(args) => read::run_stream(&target, args).await,
        Command::ReadAll(args) => read::run_all(&target, args).await,
        Command::Bench(bench) => crate::bench::run(&target, bench).await,
        Command::Rebuild(args) => rebuild::run(&target, args).await,
        Command::Project(args) => project::run(&target, args).await,
        Command::Token(command) => token::run(&target, command).await,
        Command::Audit(command) => audit::run(&target, command).await,
        Command::Verify(args) => verify::run(&target, args).await,
        Command::Export(args) => export::run(&target, args).await,
        Command::Import(args) => import::run(&target, args).await,
        Command::Erase(args) => erase::run(&target, args).await,
    }
}

/// Opens an existing database with default options: only `serve`, `migrate` and `append`
/// create one.
async fn open_existing(target: &Target) -> Result<Database, CliError> {
    database::open_existing(target, StoreOptions::default()).await
}

/// The vault of the database's tenant keys.
pub(crate) fn vault(db: &Database) -> Vault {
    Vault::new(db.store.clone())
}

/// The database's log as audit reads use it: whole events opened (or `[erased]`).
pub(crate) fn sealed_log(db: &Database) -> Arc<dyn LogReader> {
    Arc::new(SealedLog::new(db.store.clone(), vault(db)))
}

/// The database's store as commands and reads use it: personal fields sealed on the way in,
/// opened (or `[erased]`) on the way out.
pub(crate) fn sealed(db: &Database) -> Arc<dyn EventStore> {
    Arc::new(SealedStore::new(db.store.clone(), vault(db)))
}
