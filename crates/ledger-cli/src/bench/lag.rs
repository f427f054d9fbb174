//! `ledger bench lag`: the projections' live lag, from an append to the moment every
//! projection has applied it, at a steady append rate, with the runners in process as
//! `ledger serve` runs them.
//!
//! The writer appends in this process (its appends wake the runners in process), or with
//! `--writer-process` in a child `ledger bench lag-writer` (this same binary), so that each
//! event reaches the runners only through the cross-process wake-up. The child prints one line
//! per append with the wall-clock time taken just before it; both processes read the clock
//! of one machine.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use ledger_core::{EventStore, ExpectedSeq, Position, StoreOptions, StreamName};
use ledger_domain::TenantEvent;
use ledger_projector::{ProjectionError, Projector, ProjectorOptions, Signal, SignalingStore};
use ledger_read_models::Logged;
use ledger_read_models::bench::to_new_event;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::stats::{Histogram, peak_rss_bytes};
use super::{Report, ratio};
use crate::args::{BenchLagArgs, BenchLagWriterArgs};
use crate::commands::rebuild::projection_error;
use crate::database::{self, Target};
use crate::output::CliError;

/// How long one event may take to show before the bench gives up on it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How long the writer process may take to start and to finish beyond its appending time.
const WRITER_PATIENCE: Duration = Duration::from_secs(60);

/// A line of `ledger bench lag-writer`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WriterLine {
    /// One append: its position and the wall-clock time just before it, in microseconds
    /// since the Unix epoch.
    Appended {
        /// The event's position.
        position: u64,
        /// When the append started.
        at_us: u64,
    },
    /// The writer is done: how long it appended.
    Done {
        /// From before the first append to after the last, in microseconds.
        elapsed_us: u64,
    },
}

/// Appends at `--rate` for `--seconds` and measures when each append is visible everywhere.
pub async fn run(target: &Target, args: BenchLagArgs) -> Result<Report, CliError> {
    let names = super::rebuild::projection_list(&args.projections)?;
    let db = database::open(target, StoreOptions::default()).await?;
    let signal = Signal::new();
    let inner: Arc<dyn EventStore> = db.store.clone();
    let store: Arc<dyn EventStore> = Arc::new(SignalingStore::new(inner, signal.clone()));
    let projector = db
        .projector(ProjectorOptions::default())
        .with_signal(signal);
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = {
        let (projector, names) = (projector.clone(), names.clone());
        tokio::spawn(async move {
            projector
                .run(&names, async {
                    let _ = stopped.await;
                })
                .await
        })
    };

    // Let the runners catch up with whatever the log already holds.
    let warmup = append_one(&*store).await?;
    for name in &names {
        projector
            .wait_for(name, warmup, Duration::from_secs(3600))
            .await
            .map_err(projection_error)?;
    }

    let (tx, rx) = mpsc::unbounded_channel::<(Position, Instant)>();
    let waiter = tokio::spawn(watch_lags(projector.clone(), names.clone(), rx));
    let rate = args.rate.max(1);
    let elapsed = if args.writer_process {
        append_elsewhere(target, rate, args.seconds, tx).await?
    } else {
        append_here(&*store, rate, args.seconds, tx).await?
    };
    let (lags, seen) = waiter
        .await
        .map_err(|e| CliError::from(anyhow::anyhow!("the lag watcher failed: {e}")))?;
    let _ = stop.send(());
    let _ = runner.await;
    let achieved = seen as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    Ok(Report {
        bench: "lag",
        backend: db.backend.name(),
        database: "given",
        writers: 1,
        batch: 1,
        seconds: serde_json::Number::from(args.seconds),
        events: seen,
        ledger_events_per_s: achieved,
        baseline_events_per_s: rate as f64,
        ratio: ratio(achieved, rate as f64),
        p50_ms: lags.percentile_ms(50.0),
        p99_ms: lags.percentile_ms(99.0),
        baseline_p50_ms: None,
        baseline_p99_ms: None,
        conflicts: 0,
        peak_rss_bytes: peak_rss_bytes(),
        contended: false,
        rounds: 1,
        writer_process: args.writer_process,
        log_reads_per_s: None,
        idle_log_reads_per_s: None,
        filters: None,
        projections: Some(names.join(",")),
    })
}

/// Waits for each event sent on `rx` to show in every read model of `names`; returns the lags and how
/// many showed.
async fn watch_lags(
    projector: Projector<Logged>,
    names: Vec<&'static str>,
    mut rx: mpsc::UnboundedReceiver<(Position, Instant)>,
) -> (Histogram, u64) {
    let mut lags = Histogram::new();
    let mut seen = 0u64;
    let mut pending = tokio::task::JoinSet::new();
    while let Some((position, appended)) = rx.recv().await {
        let (projector, names) = (projector.clone(), names.clone());
        pending.spawn(async move {
            for name in names {
                projector.wait_for(name, position, TIMEOUT).await?;
            }
            Ok::<Duration, ProjectionError>(appended.elapsed())
        });
    }
    while let Some(done) = pending.join_next().await {
        // An event that never showed counts as the timeout, so it weighs on the p99.
        if let Ok(lag) = done {
            lags.record(lag.unwrap_or(TIMEOUT));
            seen += 1;
        }
    }
    (lags, seen)
}

/// Appends `rate` events a second for `seconds` in this process, sending each one's position
/// and start to `tx`; returns how long it took.
async fn append_here(
    store: &dyn EventStore,
    rate: u64,
    seconds: u64,
    tx: mpsc::UnboundedSender<(Position, Instant)>,
) -> Result<Duration, CliError> {
    let mut tick = ticker(rate);
    let started = Instant::now();
    for _ in 0..rate * seconds {
        tick.tick().await;
        let at = Instant::now();
        let position = append_one(store).await?;
        let _ = tx.send((position, at));
    }
    Ok(started.elapsed())
}

/// Runs `ledger bench lag-writer` on the same database and forwards each append it reports to
/// `tx`, its start converted to this process's clock; returns how long the writer appended.
async fn append_elsewhere(
    target: &Target,
    rate: u64,
    seconds: u64,
    tx: mpsc::UnboundedSender<(Position, Instant)>,
) -> Result<Duration, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::Error::new(e).context("finding the ledger binary"))?;
    // The URL goes through the environment: a password in it stays out of the process list.
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "lag-writer", "--rate", &rate.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .env("LEDGER_DATABASE_URL", &target.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::Error::new(e).context("starting the writer process"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let patience = Duration::from_secs(seconds) + WRITER_PATIENCE;
    let mut elapsed = None;
    let read = tokio::time::timeout(patience, async {
        while let Some(line) = lines.next_line().await? {
            match serde_json::from_str::<WriterLine>(&line) {
                Ok(WriterLine::Appended { position, at_us }) => {
                    let ago = since_unix_us(at_us);
                    let at = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
                    let _ = tx.send((Position(position), at));
                }
                Ok(WriterLine::Done { elapsed_us }) => {
                    elapsed = Some(Duration::from_micros(elapsed_us));
                }
                Err(_) => tracing::debug!(%line, "an unexpected line from the writer process"),
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    drop(tx);
    let status = match read {
        Ok(Ok(())) => tokio::time::timeout(WRITER_PATIENCE, child.wait())
            .await
            .ok(),
        Ok(Err(e)) => return Err(anyhow::Error::new(e).context("reading the writer").into()),
        Err(_) => None,
    };
    let Some(Ok(status)) = status else {
        let _ = child.start_kill();
        return Err(anyhow::anyhow!("the writer process did not finish in time").into());
    };
    let errors = errors.await.unwrap_or_default();
    match (status.success(), elapsed) {
        (true, Some(elapsed)) => Ok(elapsed),
        _ => Err(anyhow::anyhow!(
            "the writer process failed ({status}): {}",
            errors.lines().last().unwrap_or("").trim()
        )
        .into()),
    }
}

/// The appending side of `--writer-process`: appends `rate` events a second for `seconds` to
/// `target` and prints a [`WriterLine`] per append, then one when done (after other processes
/// were told of the last append). Stops early when stdout is closed.
pub async fn writer(target: &Target, args: &BenchLagWriterArgs) -> Result<(), CliError> {
    let db = database::open(target, StoreOptions::default()).await?;
    let rate = args.rate.max(1);
    let mut tick = ticker(rate);
    let started = Instant::now();
    for _ in 0..rate * args.seconds {
        tick.tick().await;
        let at_us = unix_us(SystemTime::now());
        let position = append_one(&*db.store).await?.0;
        if !write_line(&WriterLine::Appended { position, at_us })? {
            break;
        }
    }
    let elapsed_us = started.elapsed().as_micros() as u64;
    db.flush_wakeups().await;
    write_line(&WriterLine::Done { elapsed_us })?;
    Ok(())
}

/// Writes one line on stdout at once; false when the reader has gone away.
fn write_line(line: &WriterLine) -> Result<bool, CliError> {
    let mut text = serde_json::to_vec(line)
        .map_err(|e| CliError::Internal(anyhow::Error::new(e).context("encoding JSON")))?;
    text.push(b'\n');
    let mut out = std::io::stdout().lock();
    match out.write_all(&text).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A ticker firing `rate` times a second, delaying (not bunching) missed ticks.
fn ticker(rate: u64) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Microseconds since the Unix epoch.
fn unix_us(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// How long ago `at_us` (microseconds since the Unix epoch) was; zero for a time ahead.
fn since_unix_us(at_us: u64) -> Duration {
    Duration::from_micros(unix_us(SystemTime::now()).saturating_sub(at_us))
}

/// Registers a new tenant; returns the event's position.
async fn append_one(store: &dyn EventStore) -> Result<Position, CliError> {
    let id = Uuid::now_v7();
    let stream = StreamName::from_parts("tenant", &id.to_string()).expect("a valid stream");
    let event = TenantEvent::TenantRegistered {
        slug: format!("lag-{}", id.simple()),
        name: "Lag bench".into(),
        at: Utc::now(),
    };
    let result = store
        .append(stream, ExpectedSeq::NoStream, vec![to_new_event(&event)])
        .await?;
    Ok(result.position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_lines_round_trip() {
        let line = WriterLine::Appended {
            position: 7,
            at_us: 1_700_000_000_000_000,
        };
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(
            text,
            r#"{"appended":{"position":7,"at_us":1700000000000000}}"#
        );
        assert!(matches!(
            serde_json::from_str(&text).unwrap(),
            WriterLine::Appended { position: 7, .. }
        ));
        let done: WriterLine = serde_json::from_str(r#"{"done":{"elapsed_us":5}}"#).unwrap();
        assert!(matches!(done, WriterLine::Done { elapsed_us: 5 }));
    }

    #[test]
    fn times_ahead_are_no_lag() {
        let ahead = unix_us(SystemTime::now()) + 60_000_000;
        assert_eq!(since_unix_us(ahead), Duration::ZERO);
        assert!(since_unix_us(0) > Duration::from_secs(1));
    }
}
