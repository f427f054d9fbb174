//! `ledger import`: loads a `ledger export` file into an empty database in one transaction,
//! checking every line's place in its chain first (a refused line names its number and rolls
//! everything back), then rebuilds the read models.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use ledger_core::StoreError;
use ledger_core::chain::{ChainedEvent, ExportedEvent};
use ledger_core::verify::LogChecker;
use ledger_projector::ProjectorOptions;
use serde::Serialize;

use crate::args::ImportArgs;
use crate::database::{self, Target};
use crate::output::{CliError, print_json};
use crate::units;

/// What `ledger import` prints.
#[derive(Serialize)]
struct Imported {
    imported: u64,
    seconds: f64,
    events_per_s: u64,
    rebuilt: Vec<&'static str>,
    rebuild_seconds: f64,
}

/// Loads `args.file` (or stdin for `-`).
pub async fn run(target: &Target, args: ImportArgs) -> Result<(), CliError> {
    let reader: Box<dyn BufRead + Send> = if args.file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file).map_err(|e| {
            CliError::bad_input("unreadable_file", format!("cannot read {}: {e}", args.file))
        })?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    database::migrate(target).await?;
    let db = database::open(target, ledger_core::StoreOptions::default()).await?;
    let started = Instant::now();
    // The first refused line, kept whole: the store only learns that the input ended badly.
    let refused: Arc<Mutex<Option<CliError>>> = Arc::default();
    let lines = checked_lines(reader, refused.clone());
    let loaded = db.store.import(lines).await;
    if let Some(refusal) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(refusal);
    }
    let imported = loaded?;
    let elapsed = started.elapsed();
    let rebuilding = Instant::now();
    let names = ledger_read_models::catalog().names();
    db.projector(ProjectorOptions::default())
        .rebuild(&names, &mut |_| {})
        .await
        .map_err(super::rebuild::projection_error)?;
    db.flush_wakeups().await;
    print_json(&Imported {
        imported,
        seconds: units::seconds(elapsed),
        events_per_s: units::whole(super::rebuild::rate(imported, elapsed)),
        rebuilt: names,
        rebuild_seconds: units::seconds(rebuilding.elapsed()),
    })
}

/// The events of the file's lines, each checked against its chain; the first bad line ends the
/// stream with an error and leaves its refusal in `refused`.
fn checked_lines(
    reader: Box<dyn BufRead + Send>,
    refused: Arc<Mutex<Option<CliError>>>,
) -> ledger_core::ChainStream {
    let mut checker = LogChecker::new();
    let mut lines = reader.lines().enumerate();
    futures::stream::poll_fn(move |_| {
        let Some((index, line)) = lines.next() else {
            return std::task::Poll::Ready(None);
        };
        let number = index + 1;
        let event = parse(line, &mut checker).map_err(|what| {
            let message = format!("line {number}: {what}; nothing was imported");
            *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(CliError::Failed {
                code: "import_refused",
                message: message.clone(),
            });
            StoreError::InvalidInput(message)
        });
        std::task::Poll::Ready(Some(event))
    })
    .boxed()
}

/// One line as a checked event, or what is wrong with it.
fn parse(line: std::io::Result<String>, checker: &mut LogChecker) -> Result<ChainedEvent, String> {
    let line = line.map_err(|e| format!("cannot read it: {e}"))?;
    let exported: ExportedEvent =
        serde_json::from_str(&line).map_err(|e| format!("not an exported event: {e}"))?;
    let event = exported.into_chained().map_err(|e| e.to_string())?;
    checker.check(&event)?;
    Ok(event)
}
