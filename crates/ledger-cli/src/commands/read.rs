//! `ledger read` and `ledger read-all`: envelopes as JSON lines, written as the store yields them.

use futures::StreamExt;
use ledger_core::{EventStream, Position, ReadAll, Seq, StreamName};

use crate::args::{ReadAllArgs, ReadArgs};
use crate::database::Target;
use crate::output::{CliError, JsonLines};

/// Prints one stream's events from `--from-seq` on.
pub async fn run_stream(target: &Target, args: ReadArgs) -> Result<(), CliError> {
    let stream = StreamName::parse(args.stream)?;
    let db = super::open_existing(target).await?;
    print_all(super::sealed(&db).read_stream(stream, Seq(args.from_seq))).await
}

/// Prints the global log after `--after`, filtered by `--category` and `--type`.
pub async fn run_all(target: &Target, args: ReadAllArgs) -> Result<(), CliError> {
    let mut query = ReadAll::after(Position(args.after));
    query.category = args.category;
    query.event_type = args.event_type;
    let db = super::open_existing(target).await?;
    print_all(super::sealed(&db).read_all(query)).await
}

/// Writes each envelope as it arrives; stops quietly when stdout is closed.
async fn print_all(mut events: EventStream) -> Result<(), CliError> {
    let mut out = JsonLines::stdout();
    while let Some(envelope) = events.next().await {
        out.write(&envelope?)?;
        if out.is_closed() {
            return Ok(());
        }
    }
    out.finish()
}
