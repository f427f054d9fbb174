//! `ledger verify`: walks the hash chains with bounded memory and prints every broken link as a
//! JSON line, then a summary; checks pinned heads; exit 1 on any break.

use std::io::{BufRead, BufReader, Write};
use std::time::Instant;

use futures::StreamExt;
use ledger_core::chain::{ChainScope, StreamHead};
use ledger_core::verify::{Break, ChainWalker, PinChecker};
use ledger_core::{ChainLog, Position, StreamName};
use serde::Serialize;

use crate::args::VerifyArgs;
use crate::database::Target;
use crate::output::{CliError, JsonLines};
use crate::units;

/// A broken link as printed: where, the fault's code and fields, and a sentence.
#[derive(Serialize)]
struct Printed<'a> {
    #[serde(flatten)]
    broken: &'a Break,
    message: String,
}

/// The summary line.
#[derive(Serialize)]
struct Summary {
    verified: bool,
    streams: u64,
    events: u64,
    breaks: u64,
    pinned_heads: usize,
    seconds: f64,
    events_per_s: u64,
}

/// Walks the chains (and checks the pinned heads of `--heads`).
pub async fn run(target: &Target, args: VerifyArgs) -> Result<(), CliError> {
    let stream = args.stream.map(StreamName::parse).transpose()?;
    let pins = match &args.heads {
        Some(path) => read_pins(path)?,
        None => Vec::new(),
    };
    let db = super::open_existing(target).await?;
    let store = db.store.clone();
    let started = Instant::now();
    let mut out = JsonLines::stdout();
    let mut breaks = 0u64;
    let mut print = |out: &mut JsonLines, found: Vec<Break>| -> Result<(), CliError> {
        for b in found {
            breaks += 1;
            out.write(&Printed {
                message: b.to_string(),
                broken: &b,
            })?;
        }
        Ok(())
    };
    let mut heads_out = match &args.write_heads {
        Some(path) => Some(HeadsFile::create(path)?),
        None => None,
    };
    // Pins of streams the walk reads whole are checked during it; the others, stream by
    // stream afterwards.
    let whole =
        |pin: &StreamHead| args.since == 0 && stream.as_ref().is_none_or(|s| *s == pin.stream);
    let (inline, apart): (Vec<StreamHead>, Vec<StreamHead>) = pins.into_iter().partition(whole);
    let scope = ChainScope {
        stream,
        after: Position(args.since),
    };
    let mut checker = PinChecker::new(inline);
    let (walked_streams, walked_events) = walk(
        &*store,
        scope,
        args.since == 0,
        &mut heads_out,
        &mut checker,
        |found| print(&mut out, found),
    )
    .await?;
    let (gone, mut pinned_heads) = checker.finish();
    print(&mut out, gone)?;
    for pin in apart {
        let scope = ChainScope {
            stream: Some(pin.stream.clone()),
            after: Position::START,
        };
        let mut checker = PinChecker::new([pin]);
        walk(&*store, scope, true, &mut None, &mut checker, |found| {
            print(&mut out, found)
        })
        .await?;
        let (gone, checked) = checker.finish();
        pinned_heads += checked;
        print(&mut out, gone)?;
    }
    if let Some(file) = heads_out {
        file.finish()?;
    }
    let elapsed = started.elapsed();
    out.write(&Summary {
        verified: breaks == 0,
        streams: walked_streams,
        events: walked_events,
        breaks,
        pinned_heads,
        seconds: units::seconds(elapsed),
        events_per_s: units::whole(super::rebuild::rate(walked_events, elapsed)),
    })?;
    out.finish()?;
    if breaks == 0 {
        return Ok(());
    }
    Err(CliError::Failed {
        code: "chain_broken",
        message: format!(
            "{breaks} broken link(s) in the hash chains (each is a line on stdout): the history \
             was changed outside the ledger"
        ),
    })
}

/// Walks the chains of `scope`, checking `pins` on the way and handing each batch of breaks
/// to `found`; (streams, events).
pub(crate) async fn walk(
    store: &(impl ChainLog + ?Sized),
    scope: ChainScope,
    from_start: bool,
    heads: &mut Option<HeadsFile>,
    pins: &mut PinChecker,
    mut found: impl FnMut(Vec<Break>) -> Result<(), CliError>,
) -> Result<(u64, u64), CliError> {
    let mut walker = ChainWalker::new(from_start);
    let mut events = store.chains(scope);
    // The stream being walked and its last event so far, for `heads` (a name per stream).
    let mut last: Option<StreamHead> = None;
    while let Some(event) = events.next().await {
        let event = event?;
        if let Some(file) = heads.as_mut() {
            let e = &event.envelope;
            match last.as_mut() {
                Some(head) if head.stream == e.stream => {
                    (head.seq, head.position) = (e.seq, e.position);
                    head.hash = event.hash.unwrap_or_default();
                }
                _ => {
                    if let Some(done) = last.take() {
                        file.write(&done)?;
                    }
                    last = Some(StreamHead {
                        stream: e.stream.clone(),
                        seq: e.seq,
                        hash: event.hash.unwrap_or_default(),
                        position: e.position,
                    });
                }
            }
        }
        if let Some(broken) = pins.see(&event) {
            found(vec![broken])?;
        }
        found(walker.push(event))?;
    }
    if let (Some(file), Some(done)) = (heads.as_mut(), last) {
        file.write(&done)?;
    }
    found(walker.finish())?;
    Ok((walker.streams, walker.events))
}

/// The heads file `--write-heads` fills: one JSON object per line, as `--heads` reads it.
pub(crate) struct HeadsFile {
    out: std::io::BufWriter<std::fs::File>,
    path: String,
}

impl HeadsFile {
    /// Creates (or truncates) the file.
    fn create(path: &str) -> Result<Self, CliError> {
        let file = std::fs::File::create(path).map_err(|e| {
            CliError::bad_input("unwritable_file", format!("cannot write {path}: {e}"))
        })?;
        Ok(Self {
            out: std::io::BufWriter::new(file),
            path: path.to_string(),
        })
    }

    /// Writes one head.
    fn write(&mut self, head: &StreamHead) -> Result<(), CliError> {
        let line = serde_json::to_string(head).map_err(anyhow::Error::new)?;
        writeln!(self.out, "{line}").map_err(|e| self.failed(e))
    }

    /// Flushes the file.
    fn finish(mut self) -> Result<(), CliError> {
        self.out.flush().map_err(|e| self.failed(e))
    }

    fn failed(&self, e: std::io::Error) -> CliError {
        CliError::Internal(anyhow::Error::new(e).context(format!("writing {}", self.path)))
    }
}

/// The pinned heads in `path`: a JSON array of heads, or one head per line (what
/// `--write-heads` writes and what `GET /v1/streams/{stream}/head` answers).
fn read_pins(path: &str) -> Result<Vec<StreamHead>, CliError> {
    let bad = |message: String| CliError::bad_input("invalid_heads", message);
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read {path}: {e}")))?;
    let mut text = String::new();
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
    loop {
        text.clear();
        let n = reader
            .read_line(&mut text)
            .map_err(|e| bad(format!("cannot read {path}: {e}")))?;
        if n == 0 {
            break;
        }
        lines.push(text.clone());
    }
    let whole = lines.concat();
    if whole.trim_start().starts_with('[') {
        return serde_json::from_str(&whole).map_err(|e| bad(format!("{path}: {e}")));
    }
    let mut pins = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let pin =
            serde_json::from_str(line).map_err(|e| bad(format!("{path} line {}: {e}", i + 1)))?;
        pins.push(pin);
    }
    Ok(pins)
}
