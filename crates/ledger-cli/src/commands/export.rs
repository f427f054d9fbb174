//! `ledger export`: the log in position order as JSON lines, each event with its envelope and
//! links, streamed with bounded memory.

use futures::StreamExt;
use ledger_core::Position;
use ledger_core::chain::ExportedEvent;

use crate::args::ExportArgs;
use crate::database::Target;
use crate::output::{CliError, JsonLines};

/// Writes every event after `--since` to stdout.
pub async fn run(target: &Target, args: ExportArgs) -> Result<(), CliError> {
    let db = super::open_existing(target).await?;
    let mut events = db.store.chained_log(Position(args.since));
    let mut out = JsonLines::stdout();
    while let Some(event) = events.next().await {
        let line = ExportedEvent::of(event?)
            .map_err(|e| CliError::bad_input("unchained_event", e.to_string()))?;
        out.write(&line)?;
        if out.is_closed() {
            return Ok(());
        }
    }
    out.finish()
}
