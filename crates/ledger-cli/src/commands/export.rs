//! `ledger export`: the log in position order as JSON lines, each event with its envelope and
//! links, streamed with bounded memory; with `--with-keys`, the tenants' data keys first.

use futures::StreamExt;
use ledger_core::chain::ExportedEvent;
use ledger_core::{KeyRecord, Position};
use serde::{Deserialize, Serialize};

use crate::args::ExportArgs;
use crate::database::Target;
use crate::output::{CliError, JsonLines};

/// A line of an export that carries a data key instead of an event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyLine {
    /// The key table's row.
    pub data_key: KeyRecord,
}

/// Writes every event after `--since` to stdout.
pub async fn run(target: &Target, args: ExportArgs) -> Result<(), CliError> {
    let db = super::open_existing(target).await?;
    let mut out = JsonLines::stdout();
    if args.with_keys {
        for key in db.store.key_records().await? {
            out.write(&KeyLine { data_key: key })?;
        }
    }
    let mut events = db.store.chained_log(Position(args.since));
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
