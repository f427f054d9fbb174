//! `ledger bench read`: a full read of the global log through the ledger vs one plain SELECT.
//!
//! `p50_ms`/`p99_ms` are the time the ledger's read takes to yield each 1000 events (one page
//! at the default page size). Events are counted, never collected, so peak RSS stays flat
//! whatever the log's length; the peak is reset after seeding where Linux allows it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use ledger_core::{ExpectedSeq, ReadAll, StoreError, StoreOptions, StreamName};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::event::payment_verified;
use super::stats::{Histogram, peak_rss_bytes, reset_peak_rss};
use super::{Report, join_seeders, ratio, seed_progress_bar};
use crate::args::BenchReadArgs;
use crate::database::{self, LedgerStore, Target};
use crate::output::CliError;
use crate::units;

/// Events per seeding append and per timed page.
const PAGE: u64 = 1000;
/// Concurrent seeding tasks.
const SEEDERS: u64 = 4;
/// Timed runs of each side; the best is kept.
const RUNS: usize = 2;

/// Seeds the log up to `--events`, then times both sides.
pub async fn run(target: &Target, args: BenchReadArgs) -> Result<Report, CliError> {
    let db = database::open(target, StoreOptions::default()).await?;
    let have = db.store.log_len().await?;
    if have < args.events {
        seed(&db.store, args.events - have).await?;
    }
    // Every ledger run comes first, so the peak is the ledger read's own and nothing the
    // baseline allocated is counted against it.
    reset_peak_rss();
    let mut ledger: Option<Timed> = None;
    for _ in 0..RUNS {
        let l = time_ledger(db.store.as_ref()).await?;
        ledger = Some(best(ledger, l));
    }
    let peak = peak_rss_bytes();
    let mut baseline: Option<Timed> = None;
    for _ in 0..RUNS {
        let b = time_baseline(db.store.as_ref()).await?;
        baseline = Some(best(baseline, b));
    }
    let (ledger, baseline) = (ledger.unwrap_or_default(), baseline.unwrap_or_default());
    let (ledger_rate, baseline_rate) = (ledger.rate(), baseline.rate());
    Ok(Report {
        bench: "read",
        backend: db.backend.name(),
        database: "given",
        writers: 1,
        batch: PAGE,
        seconds: serde_json::Number::from_f64(units::seconds(ledger.elapsed))
            .unwrap_or_else(|| 0.into()),
        events: ledger.events,
        ledger_events_per_s: ledger_rate,
        baseline_events_per_s: baseline_rate,
        ratio: ratio(ledger_rate, baseline_rate),
        p50_ms: ledger.pages.percentile_ms(50.0),
        p99_ms: ledger.pages.percentile_ms(99.0),
        baseline_p50_ms: None,
        baseline_p99_ms: None,
        conflicts: 0,
        peak_rss_bytes: peak,
        contended: false,
        rounds: 1,
        writer_process: false,
        log_reads_per_s: None,
        idle_log_reads_per_s: None,
        filters: None,
        projections: None,
    })
}

/// One timed full read.
#[derive(Default)]
struct Timed {
    events: u64,
    elapsed: Duration,
    pages: Histogram,
}

impl Timed {
    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }
}

/// The faster of two runs.
fn best(kept: Option<Timed>, new: Timed) -> Timed {
    match kept {
        Some(k) if k.rate() >= new.rate() => k,
        _ => new,
    }
}

/// Reads the whole log through the ledger, counting events and timing each 1000.
async fn time_ledger(store: &dyn LedgerStore) -> Result<Timed, StoreError> {
    let mut pages = Histogram::new();
    let start = Instant::now();
    let mut mark = start;
    let mut events = 0u64;
    let mut log = store.read_all(ReadAll::from_start());
    while let Some(envelope) = log.next().await {
        envelope?;
        events += 1;
        if events.is_multiple_of(PAGE) {
            let now = Instant::now();
            pages.record(now - mark);
            mark = now;
        }
    }
    Ok(Timed {
        events,
        elapsed: start.elapsed(),
        pages,
    })
}

/// One plain ordered SELECT of the log.
async fn time_baseline(store: &dyn LedgerStore) -> Result<Timed, StoreError> {
    let start = Instant::now();
    let events = store.baseline_scan().await?;
    Ok(Timed {
        events,
        elapsed: start.elapsed(),
        pages: Histogram::new(),
    })
}

/// Appends `missing` events in batches of 1000, each batch to a new stream, from a few
/// concurrent tasks, with a progress bar on stderr when it is a terminal.
async fn seed(store: &Arc<dyn LedgerStore>, missing: u64) -> Result<(), CliError> {
    tracing::info!(missing, "bench read: seeding the log");
    let bar = seed_progress_bar(missing);
    let run = Uuid::now_v7();
    let batches = missing.div_ceil(PAGE);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for w in 0..SEEDERS {
        let (store, next, bar) = (store.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut n = 0;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<(), StoreError>(());
                }
                let size = PAGE.min(missing - b * PAGE);
                let events = (0..size)
                    .map(|_| {
                        n += 1;
                        payment_verified(run, w, n)
                    })
                    .collect();
                let stream = StreamName::parse(format!("benchseed-{run}-{b}"))
                    .expect("seed stream names are valid");
                store.append(stream, ExpectedSeq::NoStream, events).await?;
                bar.inc(size);
            }
        });
    }
    join_seeders(tasks, bar).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_keeps_the_faster_run() {
        let slow = Timed {
            events: 100,
            elapsed: Duration::from_secs(2),
            pages: Histogram::new(),
        };
        let fast = Timed {
            events: 100,
            elapsed: Duration::from_secs(1),
            pages: Histogram::new(),
        };
        assert_eq!(best(Some(slow), fast).elapsed, Duration::from_secs(1));
        assert_eq!(Timed::default().rate(), 0.0);
    }
}
