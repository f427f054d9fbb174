//! `ledger bench`: the store measured against plain SQL on the same database.
//!
//! Each benchmark prints a human summary, or with `--json` one [`Report`] object.

mod append;
mod event;
mod lag;
mod read;
mod rebuild;
mod stats;

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use ledger_core::StoreError;
use tokio::task::JoinSet;

use serde::Serialize;

use crate::args::BenchCommand;
use crate::database::Target;
use crate::output::{CliError, print_json};

/// Runs one benchmark.
pub async fn run(target: &Target, command: BenchCommand) -> Result<(), CliError> {
    let (report, json) = match command {
        BenchCommand::Append(args) => {
            let json = args.json;
            (append::run(target, args).await?, json)
        }
        BenchCommand::Read(args) => {
            let json = args.json;
            (read::run(target, args).await?, json)
        }
        BenchCommand::Rebuild(args) => {
            let json = args.json;
            (rebuild::run(target, args).await?, json)
        }
        BenchCommand::Lag(args) => {
            let json = args.json;
            (lag::run(target, args).await?, json)
        }
    };
    if json {
        print_json(&report)
    } else {
        print_summary(&report)
    }
}

/// What a benchmark measured; `--json` prints it as one object.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `append`, `read`, `rebuild` or `lag`.
    pub bench: &'static str,
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    /// Concurrent tasks (1 for `read`).
    pub writers: u64,
    /// Events per append (`append`), events per timed page (`read`: 1000).
    pub batch: u64,
    /// Duration of each phase (`append`: the requested seconds; `read`: the best ledger read).
    pub seconds: serde_json::Number,
    /// Events the ledger appended (`append`) or read (`read`).
    pub events: u64,
    /// Ledger throughput.
    pub ledger_events_per_s: f64,
    /// Plain-SQL throughput on the same rows.
    pub baseline_events_per_s: f64,
    /// `ledger_events_per_s / baseline_events_per_s`.
    pub ratio: f64,
    /// Median latency (`append`: one append call; `read`: one 1000-event page), in ms.
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency, same unit as `p50_ms`.
    pub p99_ms: Option<f64>,
    /// Appends refused by a conflict (and retried); 0 for `read`.
    pub conflicts: u64,
    /// Peak resident memory of the process (VmHWM), in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// `append --contended`: all writers raced on 4 shared streams.
    pub contended: bool,
    /// Rounds measured (`rebuild`: the figures are medians over them; 1 otherwise).
    pub rounds: u64,
}

/// `ledger / baseline`, 0 when the baseline measured nothing.
pub(crate) fn ratio(ledger: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        ledger / baseline
    } else {
        0.0
    }
}

/// Prints the human summary on stdout.
fn print_summary(r: &Report) -> Result<(), CliError> {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    let mib = |v: Option<u64>| {
        v.map_or("-".to_string(), |v| {
            format!("{:.1} MiB", v as f64 / 1048576.0)
        })
    };
    let mut text = String::new();
    if r.bench == "append" {
        text += &format!(
            "bench append on {}: {} writers, batch {}, {} s per phase{}\n",
            r.backend,
            r.writers,
            r.batch,
            r.seconds,
            if r.contended {
                ", contended (4 shared streams)"
            } else {
                ""
            }
        );
        text += &format!(
            "  ledger:   {:>12.0} events/s  ({} events, append p50 {}, p99 {}, {} conflicts)\n",
            r.ledger_events_per_s,
            r.events,
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.conflicts
        );
    } else if r.bench == "rebuild" {
        text += &format!(
            "bench rebuild on {}: every projection from {} events, batch {}, median of {} rounds\n",
            r.backend, r.events, r.batch, r.rounds
        );
        text += &format!(
            "  rebuild:  {:>12.0} events/s  ({} s)\n",
            r.ledger_events_per_s, r.seconds
        );
        text += &format!(
            "  raw scan: {:>12.0} events/s  (plain SQL over the same log)\n",
            r.baseline_events_per_s
        );
        text += &format!(
            "  ratio:    {:>12.2}  (rebuild / raw scan, each round's pair)\n",
            r.ratio
        );
        text += &format!("  peak RSS: {:>12}\n", mib(r.peak_rss_bytes));
        return write_out(&text);
    } else if r.bench == "lag" {
        text += &format!(
            "bench lag on {}: {} appends at {:.0}/s for {} s, runners in process\n",
            r.backend, r.events, r.baseline_events_per_s, r.seconds
        );
        text += &format!(
            "  lag (append to visible in every projection): p50 {}, p99 {}\n",
            ms(r.p50_ms),
            ms(r.p99_ms)
        );
        text += &format!("  peak RSS: {:>12}\n", mib(r.peak_rss_bytes));
        return write_out(&text);
    } else {
        text += &format!(
            "bench read on {}: full read of {} events\n",
            r.backend, r.events
        );
        text += &format!(
            "  ledger:   {:>12.0} events/s  (1000-event page p50 {}, p99 {})\n",
            r.ledger_events_per_s,
            ms(r.p50_ms),
            ms(r.p99_ms)
        );
    }
    text += &format!(
        "  baseline: {:>12.0} events/s  (plain SQL)\n",
        r.baseline_events_per_s
    );
    text += &format!("  ratio:    {:>12.2}  (ledger / baseline)\n", r.ratio);
    text += &format!("  peak RSS: {:>12}\n", mib(r.peak_rss_bytes));
    write_out(&text)
}

/// Writes the summary on stdout; a closed pipe is not an error.
fn write_out(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A seeding progress bar on stderr, hidden when stderr is not a terminal.
pub(crate) fn seed_progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "seeding {bar:40} {human_pos}/{human_len} events ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Waits for every seeding task, then clears the bar; the first failure is the answer.
pub(crate) async fn join_seeders(
    mut tasks: JoinSet<Result<(), StoreError>>,
    bar: ProgressBar,
) -> Result<(), CliError> {
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined
            .map_err(|e| CliError::from(anyhow::anyhow!("a seeding task failed: {e}")))
            .and_then(|r| r.map_err(CliError::from));
        if result.is_ok() {
            result = outcome;
        }
    }
    bar.finish_and_clear();
    result
}
