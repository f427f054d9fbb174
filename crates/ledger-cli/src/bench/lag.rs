//! `ledger bench lag`: the projections' live lag, from an append to the moment every
//! projection has applied it, at a steady append rate, with the runners in process as
//! `ledger serve` runs them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ledger_core::NewEvent;
use ledger_core::{EventStore, ExpectedSeq, StoreOptions, StreamName};
use ledger_domain::TenantEvent;
use ledger_projector::{ProjectionError, ProjectorOptions, Signal, SignalingStore};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::stats::{Histogram, peak_rss_bytes};
use super::{Report, ratio};
use crate::args::BenchLagArgs;
use crate::commands::rebuild::projection_error;
use crate::database::{self, Target};
use crate::output::CliError;

/// How long one event may take to show before the bench gives up on it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Appends at `--rate` for `--seconds` and measures when each append is visible everywhere.
pub async fn run(target: &Target, args: BenchLagArgs) -> Result<Report, CliError> {
    let db = database::open(target, StoreOptions::default()).await?;
    let signal = Signal::new();
    let projector = db
        .projector(ProjectorOptions::default())
        .with_signal(signal.clone());
    let names = projector.catalog().names();
    let inner: Arc<dyn EventStore> = db.store.clone();
    let store: Arc<dyn EventStore> = Arc::new(SignalingStore::new(inner, signal));
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = {
        let projector = projector.clone();
        tokio::spawn(async move {
            let names = projector.catalog().names();
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

    let (tx, mut rx) = mpsc::unbounded_channel::<(ledger_core::Position, Instant)>();
    let waiter = {
        let projector = projector.clone();
        tokio::spawn(async move {
            let mut lags = Histogram::new();
            let mut seen = 0u64;
            let mut pending = tokio::task::JoinSet::new();
            while let Some((position, appended)) = rx.recv().await {
                let projector = projector.clone();
                pending.spawn(async move {
                    for name in projector.catalog().names() {
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
        })
    };
    let rate = args.rate.max(1);
    let total = rate * args.seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    for _ in 0..total {
        tick.tick().await;
        let at = Instant::now();
        let position = append_one(&*store).await?;
        let _ = tx.send((position, at));
    }
    let elapsed = started.elapsed();
    drop(tx);
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
        conflicts: 0,
        peak_rss_bytes: peak_rss_bytes(),
        contended: false,
        rounds: 1,
    })
}

/// Registers a new tenant; returns the event's position.
async fn append_one(store: &dyn EventStore) -> Result<ledger_core::Position, CliError> {
    let id = Uuid::now_v7();
    let stream = StreamName::from_parts("tenant", &id.to_string()).expect("a valid stream");
    let event = TenantEvent::TenantRegistered {
        slug: format!("lag-{}", id.simple()),
        name: "Lag bench".into(),
        at: Utc::now(),
    };
    let (event_type, data) = event.to_parts();
    let result = store
        .append(
            stream,
            ExpectedSeq::NoStream,
            vec![NewEvent::new(event_type, data)],
        )
        .await?;
    Ok(result.position)
}
