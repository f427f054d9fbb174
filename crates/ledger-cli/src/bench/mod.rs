//! `ledger bench`: the store measured against plain SQL on the same database.
//!
//! A benchmark never writes into someone's ledger: without `--database-url` it runs on a
//! temporary SQLite file, removed afterwards; with a PostgreSQL server URL and `--scratch` on a
//! fresh database it creates and drops; on a given database that already holds events only with
//! `--allow-existing` (its events can never be deleted). Each benchmark prints a human summary,
//! or with `--json` one [`Report`] object.

mod append;
mod audit;
mod event;
mod http;
mod lag;
mod live;
mod read;
mod rebuild;
mod stats;
mod verify;

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use ledger_core::{StoreError, StoreOptions};
use ledger_postgres::ScratchDatabase;
use serde::{Serialize, Serializer};
use tokio::task::JoinSet;

use crate::args::{BenchCommand, BenchDatabaseArgs};
use crate::database::{self, Backend, Target};
use crate::output::{CliError, print_json};
use crate::units;

/// Prefix of the scratch databases `--scratch` creates.
const SCRATCH_PREFIX: &str = "ledger_bench";

/// Runs one benchmark on the database its flags select, then removes that database if the
/// benchmark made it (also when it fails or is interrupted).
pub async fn run(target: &Target, command: BenchCommand) -> Result<(), CliError> {
    let (flags, json) = match &command {
        BenchCommand::Append(a) => (&a.database, a.json),
        BenchCommand::Read(a) => (&a.database, a.json),
        BenchCommand::Rebuild(a) => (&a.database, a.json),
        BenchCommand::Lag(a) => (&a.database, a.json),
        BenchCommand::Live(a) => (&a.database, a.json),
        BenchCommand::Audit(a) => (&a.database, a.json),
        BenchCommand::Verify(a) => (&a.database, a.json),
        BenchCommand::Http(args) => return http::run(target, args).await,
        // The writer of `bench lag --writer-process` appends to the database its parent
        // prepared, until done or told to stop.
        BenchCommand::LagWriter(args) => {
            let interrupted = ledger_api::shutdown_signal();
            return tokio::select! {
                outcome = lag::writer(target, args) => outcome,
                () = interrupted => Ok(()),
            };
        }
    };
    let place = Place::prepare(target, flags).await?;
    let interrupted = ledger_api::shutdown_signal();
    let outcome = tokio::select! {
        outcome = measure(place.target(), command) => outcome,
        () = interrupted => Err(CliError::Failed {
            code: "interrupted",
            message: "the benchmark was interrupted".into(),
        }),
    };
    let database = place.kind();
    place.remove().await;
    let mut report = outcome?;
    report.database = database;
    if json {
        print_json(&report)
    } else {
        print_summary(&report)
    }
}

/// Runs the benchmark `command` names on `target`.
async fn measure(target: &Target, command: BenchCommand) -> Result<Report, CliError> {
    match command {
        BenchCommand::Append(args) => append::run(target, args).await,
        BenchCommand::Read(args) => read::run(target, args).await,
        BenchCommand::Rebuild(args) => rebuild::run(target, args).await,
        BenchCommand::Lag(args) => lag::run(target, args).await,
        BenchCommand::Live(args) => live::run(target, args).await,
        BenchCommand::Audit(args) => audit::run(target, args).await,
        BenchCommand::Verify(args) => verify::run(target, args).await,
        BenchCommand::LagWriter(_) => unreachable!("the lag writer runs without a bench place"),
        BenchCommand::Http(_) => unreachable!("bench http prints its own report"),
    }
}

/// The database a benchmark runs on.
enum Place {
    /// A SQLite file in a temporary directory, removed with it.
    Temporary(tempfile::TempDir, Target),
    /// A PostgreSQL database created for this run, dropped afterwards.
    Scratch(ScratchDatabase, Target),
    /// The database `--database-url` names: empty, or `--allow-existing`.
    Given(Target),
}

impl Place {
    /// Picks (and creates, for a temporary or scratch one) the database `flags` ask for.
    async fn prepare(target: &Target, flags: &BenchDatabaseArgs) -> Result<Self, CliError> {
        if !target.given {
            let dir = tempfile::Builder::new()
                .prefix("ledger-bench-")
                .tempdir()
                .map_err(|e| anyhow::Error::new(e).context("creating a temporary directory"))?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let temporary = database::resolve(Some(&url))?;
            return Ok(Place::Temporary(dir, temporary));
        }
        if flags.scratch {
            if target.backend != Backend::Postgres {
                return Err(CliError::bad_input(
                    "scratch_needs_postgres",
                    "--scratch creates a database on a PostgreSQL server: pass a postgres:// URL, or leave out --database-url to bench a temporary SQLite file",
                ));
            }
            let scratch = ScratchDatabase::create(&target.url, SCRATCH_PREFIX)
                .await
                .map_err(|e| target.error(e))?;
            let url = scratch.url().to_string();
            let prepared = match database::resolve(Some(&url)) {
                Ok(t) => database::migrate(&t).await.map(|_| t),
                Err(e) => Err(e),
            };
            return match prepared {
                Ok(t) => Ok(Place::Scratch(scratch, t)),
                Err(e) => {
                    drop_scratch(scratch).await;
                    Err(e)
                }
            };
        }
        let events = {
            let db = database::open(target, StoreOptions::default()).await?;
            db.store.log_len().await.map_err(|e| target.error(e))?
        };
        if events > 0 && !flags.allow_existing {
            return Err(CliError::bad_input(
                "database_not_empty",
                format!(
                    "the database at {} already holds {} events, and a benchmark appends events that can never be deleted: leave out --database-url to bench a temporary database, pass --scratch with a PostgreSQL server URL for a fresh one, or --allow-existing to bench this one anyway",
                    target.location(),
                    units::thousands(events)
                ),
            ));
        }
        Ok(Place::Given(target.clone()))
    }

    fn target(&self) -> &Target {
        match self {
            Place::Temporary(_, t) | Place::Scratch(_, t) | Place::Given(t) => t,
        }
    }

    /// `temporary`, `scratch` or `given`, as the report says.
    fn kind(&self) -> &'static str {
        match self {
            Place::Temporary(..) => "temporary",
            Place::Scratch(..) => "scratch",
            Place::Given(_) => "given",
        }
    }

    /// Removes the database if the benchmark made it.
    async fn remove(self) {
        match self {
            Place::Temporary(dir, _) => {
                if let Err(e) = dir.close() {
                    tracing::warn!(error = %e, "could not remove the temporary database");
                }
            }
            Place::Scratch(scratch, _) => drop_scratch(scratch).await,
            Place::Given(_) => {}
        }
    }
}

/// Drops a scratch database, saying so if that fails (a database is left behind).
async fn drop_scratch(scratch: ScratchDatabase) {
    let name = scratch.name().to_string();
    if let Err(e) = scratch.drop_database().await {
        tracing::warn!(database = %name, error = %e, "could not drop the scratch database: drop it by hand");
    }
}

/// What a benchmark measured; `--json` prints it as one object.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `append`, `read`, `rebuild` or `lag`.
    pub bench: &'static str,
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    /// `temporary` (a SQLite file, removed), `scratch` (a PostgreSQL database, dropped) or
    /// `given` (the `--database-url` database).
    pub database: &'static str,
    /// Concurrent tasks (1 for `read`).
    pub writers: u64,
    /// Events per append (`append`), events per timed page (`read`: 1000).
    pub batch: u64,
    /// Duration of each phase (`append`: the requested seconds; `read`: the best ledger read).
    pub seconds: serde_json::Number,
    /// Events the ledger appended (`append`) or read (`read`).
    pub events: u64,
    /// Ledger throughput (printed as a whole number).
    #[serde(serialize_with = "whole")]
    pub ledger_events_per_s: f64,
    /// Plain-SQL throughput on the same rows (printed as a whole number).
    #[serde(serialize_with = "whole")]
    pub baseline_events_per_s: f64,
    /// `ledger_events_per_s / baseline_events_per_s` (printed to 3 decimals).
    #[serde(serialize_with = "thousandths")]
    pub ratio: f64,
    /// Median latency (`append`: one append call; `read`: one 1000-event page), in ms (to
    /// 3 decimals).
    #[serde(serialize_with = "thousandths_opt")]
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency, same unit as `p50_ms`.
    #[serde(serialize_with = "thousandths_opt")]
    pub p99_ms: Option<f64>,
    /// `append`: the baseline's median latency (one plain INSERT), in ms.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "thousandths_opt"
    )]
    pub baseline_p50_ms: Option<f64>,
    /// `append`: the baseline's 99th-percentile latency, in ms.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "thousandths_opt"
    )]
    pub baseline_p99_ms: Option<f64>,
    /// Appends refused by a conflict (and retried); 0 for `read`.
    pub conflicts: u64,
    /// Peak resident memory of the process (VmHWM), in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// `append --contended`: all writers raced on 4 shared streams.
    pub contended: bool,
    /// Rounds measured (`rebuild`: the figures are medians over them; 1 otherwise).
    pub rounds: u64,
    /// `lag --writer-process`: the events were appended by another process.
    pub writer_process: bool,
    /// `live`: reads of the log per second while appending (all subscribers together).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "thousandths_opt"
    )]
    pub log_reads_per_s: Option<f64>,
    /// `live`: reads of the log per second with the subscribers connected and nothing appended.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "thousandths_opt"
    )]
    pub idle_log_reads_per_s: Option<f64>,
    /// `rebuild`: the read models rebuilt, comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projections: Option<String>,
    /// `audit`: per filter, the latency of the ledger's search and of the plain SQL lookup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<audit::FilterFigures>>,
}

fn whole<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(units::whole(*v))
}

fn thousandths<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(units::thousandths(*v))
}

fn thousandths_opt<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&units::thousandths(*v)),
        None => s.serialize_none(),
    }
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
    let per_s = |v: f64| units::thousands(units::whole(v));
    let mut text = String::new();
    let on = match r.database {
        "temporary" => " (a temporary database, removed)",
        "scratch" => " (a scratch database, dropped)",
        _ => "",
    };
    if r.bench == "append" {
        text += &format!(
            "bench append on {}{on}: {} writers, batch {}, {} s per phase{}{}\n",
            r.backend,
            r.writers,
            r.batch,
            r.seconds,
            if r.contended {
                ", contended (4 shared streams)"
            } else {
                ""
            },
            if r.rounds > 1 {
                format!(", median of {} rounds", r.rounds)
            } else {
                String::new()
            }
        );
        text += &format!(
            "  ledger:   {:>12} events/s  ({} events, append p50 {}, p99 {}, {} conflicts)\n",
            per_s(r.ledger_events_per_s),
            units::thousands(r.events),
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.conflicts
        );
    } else if r.bench == "verify" {
        text += &format!(
            "bench verify on {}{on}: every hash chain of {} events, median of {} rounds\n",
            r.backend,
            units::thousands(r.events),
            r.rounds
        );
        text += &format!(
            "  verify:   {:>12} events/s  ({} s, every link recomputed)\n",
            per_s(r.ledger_events_per_s),
            r.seconds
        );
        text += &format!(
            "  raw scan: {:>12} events/s  (the same rows in the same order, plain SQL)\n",
            per_s(r.baseline_events_per_s)
        );
        text += &format!(
            "  ratio:    {:>12.2}  (verify / raw scan, each round's pair)\n",
            r.ratio
        );
        text += &format!("  peak RSS: {:>12}\n", mib(r.peak_rss_bytes));
        return write_out(&text);
    } else if r.bench == "rebuild" {
        text += &format!(
            "bench rebuild on {}{on}: {} from {} events, batch {}, median of {} rounds\n",
            r.backend,
            r.projections.as_deref().unwrap_or("every projection"),
            units::thousands(r.events),
            r.batch,
            r.rounds
        );
        text += &format!(
            "  rebuild:  {:>12} events/s  ({} s)\n",
            per_s(r.ledger_events_per_s),
            r.seconds
        );
        text += &format!(
            "  raw scan: {:>12} events/s  (plain SQL over the same log)\n",
            per_s(r.baseline_events_per_s)
        );
        text += &format!(
            "  ratio:    {:>12.2}  (rebuild / raw scan, each round's pair)\n",
            r.ratio
        );
        text += &format!("  peak RSS: {:>12}\n", mib(r.peak_rss_bytes));
        return write_out(&text);
    } else if r.bench == "audit" {
        text += &audit::summary(r, on);
        return write_out(&text);
    } else if r.bench == "live" {
        let reads = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}/s"));
        text += &format!(
            "bench live on {}{on}: {} live subscribers, {} appends at {} for {} s\n",
            r.backend,
            r.writers,
            units::thousands(r.events),
            units::rate(r.baseline_events_per_s),
            r.seconds
        );
        text += &format!(
            "  delivery (append to every subscriber): p50 {}, p99 {}\n",
            ms(r.p50_ms),
            ms(r.p99_ms)
        );
        text += &format!(
            "  reads of the log: {} idle, {} while appending (all subscribers together)\n",
            reads(r.idle_log_reads_per_s),
            reads(r.log_reads_per_s)
        );
        text += &format!("  peak RSS: {:>12}\n", mib(r.peak_rss_bytes));
        return write_out(&text);
    } else if r.bench == "lag" {
        text += &format!(
            "bench lag on {}{on}: {} appends at {} for {} s, {}\n",
            r.backend,
            units::thousands(r.events),
            units::rate(r.baseline_events_per_s),
            r.seconds,
            if r.writer_process {
                "appended by another process, runners in this one"
            } else {
                "runners in process"
            }
        );
        text += &format!(
            "  lag (append to visible in {}): p50 {}, p99 {}\n",
            r.projections.as_deref().unwrap_or("every projection"),
            ms(r.p50_ms),
            ms(r.p99_ms)
        );
        text += &format!("  peak RSS: {:>12}\n", mib(r.peak_rss_bytes));
        return write_out(&text);
    } else {
        text += &format!(
            "bench read on {}{on}: full read of {} events\n",
            r.backend,
            units::thousands(r.events)
        );
        text += &format!(
            "  ledger:   {:>12} events/s  (1000-event page p50 {}, p99 {})\n",
            per_s(r.ledger_events_per_s),
            ms(r.p50_ms),
            ms(r.p99_ms)
        );
    }
    match (r.baseline_p50_ms, r.baseline_p99_ms) {
        (Some(p50), Some(p99)) => {
            text += &format!(
                "  baseline: {:>12} events/s  (plain SQL, one INSERT per batch: p50 {}, p99 {})\n",
                per_s(r.baseline_events_per_s),
                ms(Some(p50)),
                ms(Some(p99))
            )
        }
        _ => {
            text += &format!(
                "  baseline: {:>12} events/s  (plain SQL)\n",
                per_s(r.baseline_events_per_s)
            )
        }
    }
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
