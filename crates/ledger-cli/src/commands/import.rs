//! `ledger import`: loads a `ledger export` file into an empty database in one transaction,
//! checking every line's place in its chain first (a refused line names its number and rolls
//! everything back), then rebuilds the read models.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use ledger_core::chain::{ChainedEvent, ExportedEvent};
use ledger_core::verify::LogChecker;
use ledger_core::{KeyRecord, StoreError};
use ledger_projector::ProjectorOptions;
use serde::Serialize;

use super::export::KeyLine;
use crate::args::ImportArgs;
use crate::database::{self, Target};
use crate::output::{CliError, print_json};
use crate::units;

/// What `ledger import` prints.
#[derive(Serialize)]
struct Imported {
    imported: u64,
    keys: u64,
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
    let mut lines = reader.lines().enumerate().peekable();
    let keys = leading_keys(&mut lines)?;
    // Keys first: an import that fails afterwards can be run again (the log must be empty,
    // the keys merge).
    let keys_imported = db.store.import_keys(keys).await?;
    // The first refused line, kept whole: the store only learns that the input ended badly.
    let refused: Arc<Mutex<Option<CliError>>> = Arc::default();
    let lines = checked_lines(Box::new(lines), refused.clone());
    let loaded = db.store.import(lines).await;
    if let Some(refusal) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(refusal);
    }
    let imported = loaded?;
    let elapsed = started.elapsed();
    ledger_commands::reapply_erasures(db.store.as_ref(), &super::vault(&db))
        .await
        .map_err(super::erase::execute_error)?;
    let rebuilding = Instant::now();
    let names = ledger_read_models::catalog().names();
    db.projector(ProjectorOptions::default())
        .rebuild(&names, &mut |_| {})
        .await
        .map_err(super::rebuild::projection_error)?;
    db.flush_wakeups().await;
    print_json(&Imported {
        imported,
        keys: keys_imported,
        seconds: units::seconds(elapsed),
        events_per_s: units::whole(super::rebuild::rate(imported, elapsed)),
        rebuilt: names,
        rebuild_seconds: units::seconds(rebuilding.elapsed()),
    })
}

/// The events of the file's lines, each checked against its chain; the first bad line ends the
/// stream with an error and leaves its refusal in `refused`.
fn checked_lines(
    mut lines: Box<Lines>,
    refused: Arc<Mutex<Option<CliError>>>,
) -> ledger_core::ChainStream {
    let mut checker = LogChecker::new();
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

/// The numbered lines of the input.
type Lines = dyn Iterator<Item = (usize, std::io::Result<String>)> + Send;

/// The data keys at the head of an export written with `--with-keys`, taken off `lines`.
fn leading_keys<I>(lines: &mut std::iter::Peekable<I>) -> Result<Vec<KeyRecord>, CliError>
where
    I: Iterator<Item = (usize, std::io::Result<String>)>,
{
    let mut keys = Vec::new();
    while let Some((index, Ok(line))) = lines.peek() {
        if !line.starts_with(r#"{"data_key""#) {
            break;
        }
        let number = index + 1;
        let key: KeyLine = serde_json::from_str(line).map_err(|e| CliError::Failed {
            code: "import_refused",
            message: format!("line {number}: not a data key: {e}; nothing was imported"),
        })?;
        keys.push(key.data_key);
        lines.next();
    }
    Ok(keys)
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
