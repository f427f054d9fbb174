//! `ledger project`: the projection runners alone, as a worker process, until SIGTERM or
//! SIGINT. Several workers (and `ledger serve` processes) may share a PostgreSQL database:
//! exactly one applies each projection at a time, the others stand by and take over when it
//! stops.

use ledger_projector::ProjectorOptions;
use serde::Serialize;

use crate::args::ProjectArgs;
use crate::database::Target;
use crate::output::{CliError, print_json};

/// What `ledger project` prints once it runs.
#[derive(Serialize)]
struct Projecting {
    projecting: Vec<&'static str>,
    backend: &'static str,
    owner: String,
    pid: u32,
}

/// Runs the runners until a shutdown signal.
pub async fn run(target: &Target, args: ProjectArgs) -> Result<(), CliError> {
    let db = super::open_existing(target).await?;
    let options = ProjectorOptions {
        batch_size: args.batch_size as usize,
        poll_interval: args.poll_interval.map(Into::into),
        ..ProjectorOptions::default()
    };
    let owner = options.owner.clone();
    let projector = db.projector(options);
    let names = projector.catalog().names();
    let shutdown = ledger_api::shutdown_signal();
    print_json(&Projecting {
        projecting: names.clone(),
        backend: target.backend.name(),
        owner,
        pid: std::process::id(),
    })?;
    projector
        .run(&names, shutdown)
        .await
        .map_err(super::rebuild::projection_error)
}
