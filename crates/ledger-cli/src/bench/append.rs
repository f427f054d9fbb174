//! `ledger bench append`: N concurrent writers appending through the ledger for a while,
//! then the same writers inserting the same rows with plain INSERTs (`Baseline`), `--rounds`
//! times.

use std::sync::Arc;
use std::time::Duration;

use ledger_core::{BenchRow, ExpectedSeq, NewEvent, Seq, StoreError, StoreOptions, StreamName};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::event::payment_verified;
use super::stats::{Histogram, median, peak_rss_bytes};
use super::{Report, ratio};
use crate::args::BenchAppendArgs;
use crate::database::{self, LedgerStore, Target};
use crate::output::CliError;

/// Streams all writers share in `--contended` mode.
const SHARED_STREAMS: u64 = 4;

/// What every writer of a run shares.
#[derive(Clone, Copy, Debug)]
struct Plan {
    run: Uuid,
    batch: u64,
    streams_per_writer: u64,
    contended: bool,
}

impl Plan {
    /// The streams writer `w` appends to: its own ones, or the shared ones when contended.
    fn ledger_streams(&self, w: u64) -> Vec<StreamName> {
        if self.contended {
            (0..SHARED_STREAMS)
                .map(|k| self.stream("shared", k))
                .collect()
        } else {
            self.own_streams(w)
        }
    }

    /// Writer `w`'s own streams, `bench-<run>-<w>-<k>`.
    fn own_streams(&self, w: u64) -> Vec<StreamName> {
        (0..self.streams_per_writer)
            .map(|k| self.stream(&w.to_string(), k))
            .collect()
    }

    fn stream(&self, part: &str, k: u64) -> StreamName {
        StreamName::parse(format!("bench-{}-{part}-{k}", self.run))
            .expect("bench stream names are valid")
    }

    /// The next batch of writer `w`, counting events in `n`.
    fn batch(&self, w: u64, n: &mut u64) -> Vec<NewEvent> {
        (0..self.batch)
            .map(|_| {
                *n += 1;
                payment_verified(self.run, w, *n)
            })
            .collect()
    }
}

/// What one writer did in one phase.
#[derive(Default)]
struct WriterStats {
    events: u64,
    conflicts: u64,
    latencies: Histogram,
}

/// Runs both phases and reports.
pub async fn run(target: &Target, args: BenchAppendArgs) -> Result<Report, CliError> {
    let options = StoreOptions {
        max_connections: args.writers.clamp(16, 64) as u32,
        group: args.group.limits(),
        ..StoreOptions::default()
    };
    let db = database::open(target, options).await?;
    let plan = Plan {
        run: Uuid::now_v7(),
        batch: args.batch,
        streams_per_writer: args.streams_per_writer,
        contended: args.contended,
    };
    let duration = Duration::from_secs(args.seconds);
    let mut all = WriterStats::default();
    let mut raw = WriterStats::default();
    let (mut ledger_rates, mut baseline_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        // Fresh streams each round: a writer starts every stream at seq 0.
        let plan = Plan {
            run: Uuid::now_v7(),
            ..plan
        };
        tracing::info!(run = %plan.run, round, writers = args.writers, "bench append: ledger phase");
        let (ledger, ledger_elapsed) =
            phase(&db.store, plan, args.writers, duration, Phase::Ledger).await?;
        tracing::info!(round, "bench append: baseline phase");
        db.store.baseline_reset().await?;
        let (baseline, baseline_elapsed) =
            phase(&db.store, plan, args.writers, duration, Phase::Baseline).await?;
        let ledger_rate = ledger.events as f64 / ledger_elapsed.as_secs_f64();
        let baseline_rate = baseline.events as f64 / baseline_elapsed.as_secs_f64();
        ledger_rates.push(ledger_rate);
        baseline_rates.push(baseline_rate);
        ratios.push(ratio(ledger_rate, baseline_rate));
        all.events += ledger.events;
        all.conflicts += ledger.conflicts;
        all.latencies.merge(&ledger.latencies);
        raw.latencies.merge(&baseline.latencies);
    }
    Ok(Report {
        bench: "append",
        backend: db.backend.name(),
        database: "given",
        writers: args.writers,
        batch: args.batch,
        seconds: args.seconds.into(),
        events: all.events,
        ledger_events_per_s: median(ledger_rates),
        baseline_events_per_s: median(baseline_rates),
        ratio: median(ratios),
        p50_ms: all.latencies.percentile_ms(50.0),
        p99_ms: all.latencies.percentile_ms(99.0),
        baseline_p50_ms: raw.latencies.percentile_ms(50.0),
        baseline_p99_ms: raw.latencies.percentile_ms(99.0),
        conflicts: all.conflicts,
        peak_rss_bytes: peak_rss_bytes(),
        contended: args.contended,
        rounds: args.rounds,
        writer_process: false,
        log_reads_per_s: None,
        idle_log_reads_per_s: None,
        filters: None,
        projections: None,
    })
}

/// Which side a phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Ledger,
    Baseline,
}

/// Runs `writers` concurrent tasks until `duration` has passed; returns their summed stats
/// and the wall time until the last one finished.
async fn phase(
    store: &Arc<dyn LedgerStore>,
    plan: Plan,
    writers: u64,
    duration: Duration,
    which: Phase,
) -> Result<(WriterStats, Duration), CliError> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.spawn(async move {
            match which {
                Phase::Ledger => ledger_writer(store.as_ref(), plan, w, deadline).await,
                Phase::Baseline => baseline_writer(store.as_ref(), plan, w, deadline).await,
            }
        });
    }
    let mut total = WriterStats::default();
    while let Some(joined) = tasks.join_next().await {
        let stats = joined.map_err(|e| anyhow::anyhow!("a bench writer task failed: {e}"))??;
        total.events += stats.events;
        total.conflicts += stats.conflicts;
        total.latencies.merge(&stats.latencies);
    }
    Ok((total, start.elapsed()))
}

/// Appends batches with `Exact(last seq it knows)`, rotating over its streams; on a conflict
/// it counts it, takes the current seq from the conflict and retries.
async fn ledger_writer(
    store: &dyn LedgerStore,
    plan: Plan,
    w: u64,
    deadline: Instant,
) -> Result<WriterStats, StoreError> {
    let streams = plan.ledger_streams(w);
    let mut seqs = vec![Seq::ZERO; streams.len()];
    let mut stats = WriterStats::default();
    let (mut n, mut i) = (0, w as usize);
    while Instant::now() < deadline {
        let k = i % streams.len();
        i += 1;
        loop {
            let events = plan.batch(w, &mut n);
            let started = Instant::now();
            let result = store
                .append(streams[k].clone(), ExpectedSeq::Exact(seqs[k]), events)
                .await;
            stats.latencies.record(started.elapsed());
            match result {
                Ok(r) => {
                    seqs[k] = r.last_seq;
                    stats.events += plan.batch;
                    break;
                }
                Err(StoreError::Conflict(c)) => {
                    stats.conflicts += 1;
                    seqs[k] = c.current_seq;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(stats)
}

/// Inserts the same kind of rows with plain INSERTs, one per batch, into its own streams.
async fn baseline_writer(
    store: &dyn LedgerStore,
    plan: Plan,
    w: u64,
    deadline: Instant,
) -> Result<WriterStats, StoreError> {
    let streams = plan.own_streams(w);
    let mut seqs = vec![Seq::ZERO; streams.len()];
    let mut stats = WriterStats::default();
    let (mut n, mut i) = (0, 0usize);
    while Instant::now() < deadline {
        let k = i % streams.len();
        i += 1;
        let rows = plan
            .batch(w, &mut n)
            .into_iter()
            .map(|event| {
                seqs[k] = seqs[k].plus(1);
                BenchRow {
                    stream: streams[k].clone(),
                    seq: seqs[k],
                    event,
                }
            })
            .collect();
        let started = Instant::now();
        store.baseline_insert(rows).await?;
        stats.latencies.record(started.elapsed());
        stats.events += plan.batch;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(contended: bool) -> Plan {
        Plan {
            run: Uuid::now_v7(),
            batch: 3,
            streams_per_writer: 5,
            contended,
        }
    }

    #[test]
    fn writers_own_their_streams_unless_contended() {
        let p = plan(false);
        let a = p.ledger_streams(0);
        let b = p.ledger_streams(1);
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(|s| !b.contains(s)));
        assert!(a[0].as_str().starts_with(&format!("bench-{}-0-", p.run)));
        let c = plan(true);
        assert_eq!(c.ledger_streams(0), c.ledger_streams(7));
        assert_eq!(c.ledger_streams(0).len(), SHARED_STREAMS as usize);
        assert_eq!(c.own_streams(2).len(), 5);
    }

    #[test]
    fn batches_have_the_requested_size() {
        let p = plan(false);
        let mut n = 0;
        assert_eq!(p.batch(0, &mut n).len(), 3);
        assert_eq!(n, 3);
    }
}
