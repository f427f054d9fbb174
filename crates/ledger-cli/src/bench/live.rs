//! `ledger bench live`: the live log stream's delivery latency and what its subscribers cost
//! the database. Live subscribers (`GET /v1/events/live`, NDJSON, through the API's router in
//! this process) follow the log while events are appended at a steady rate; each event's
//! delivery latency runs from just before its append to its arrival at every subscriber. The
//! log reads are counted twice: with the subscribers connected and nothing appended (idle),
//! and while appending.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use ledger_api::{ApiConfig, AppState, app};
use ledger_core::{CountedLog, EventStore, ExpectedSeq, NewEvent, StoreOptions, StreamName};
use ledger_projector::{ProjectorOptions, Signal, SignalingStore};
use serde_json::json;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::stats::{Histogram, peak_rss_bytes};
use super::{Report, ratio};
use crate::args::BenchLiveArgs;
use crate::database::{self, Target};
use crate::output::CliError;

/// The admin token of the bench's in-process API.
const TOKEN: &str = "bench-live-admin-token";

/// How long the last event may take to reach every subscriber.
const PATIENCE: Duration = Duration::from_secs(30);

/// Microseconds since the Unix epoch, now.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Fails the bench with `message`.
fn failed(message: String) -> CliError {
    CliError::Failed {
        code: "bench_failed",
        message,
    }
}

/// Connects `--subscribers` live streams, counts idle reads, appends at `--rate` for
/// `--seconds` and measures each event's delivery to every subscriber.
pub async fn run(target: &Target, args: BenchLiveArgs) -> Result<Report, CliError> {
    let db = database::open(target, StoreOptions::default()).await?;
    let signal = Signal::new();
    let inner: Arc<dyn EventStore> = db.store.clone();
    let store: Arc<dyn EventStore> = Arc::new(SignalingStore::new(inner, signal.clone()));
    let projector = db
        .projector(ProjectorOptions::default())
        .with_signal(signal);
    let counting = Arc::new(CountedLog::new(db.store.clone()));
    let config = ApiConfig {
        max_live_subscribers: args.subscribers as usize + 1,
        ..ApiConfig::default()
    };
    let state = AppState::new(store.clone(), TOKEN, config)
        .with_projections(projector)
        .with_log(counting.clone());
    let router = app(state);
    let start = db.store.cursor_at(db.store.last_position().await?).await?;

    let expected = args.rate * args.seconds;
    let mut readers = JoinSet::new();
    for _ in 0..args.subscribers {
        let request = Request::get(format!("/v1/events/live?category=benchlive&cursor={start}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("accept", "application/x-ndjson")
            .body(Body::empty())
            .map_err(|e| failed(format!("cannot build the request: {e}")))?;
        let response = router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| failed(format!("the live stream did not open: {e}")))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "the live stream answered {}",
                response.status()
            )));
        }
        let mut body = response.into_body();
        readers.spawn(async move {
            let mut latencies = Vec::with_capacity(expected as usize);
            let mut buf: Vec<u8> = Vec::new();
            while (latencies.len() as u64) < expected {
                let frame = tokio::time::timeout(PATIENCE, body.frame()).await;
                let Ok(Some(Ok(frame))) = frame else {
                    break;
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if let Some(sent) = event["data"]["sent_us"].as_u64() {
                        latencies.push(now_us().saturating_sub(sent));
                    }
                }
            }
            latencies
        });
    }

    // Idle: connected, caught up, nothing appended.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_from = counting.reads();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle_reads = counting.reads() - idle_from;

    // Appending at the rate.
    let stream = StreamName::parse("benchlive-1").expect("a valid stream name");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let busy_from = counting.reads();
    let started = tokio::time::Instant::now();
    for _ in 0..expected {
        tick.tick().await;
        let event = NewEvent::new("Tick", json!({"sent_us": now_us()}));
        store
            .append(stream.clone(), ExpectedSeq::Any, vec![event])
            .await?;
    }
    let elapsed = started.elapsed();
    let mut latencies = Histogram::new();
    let mut delivered = 0u64;
    while let Some(done) = readers.join_next().await {
        let got = done.map_err(|e| failed(format!("a subscriber failed: {e}")))?;
        delivered += got.len() as u64;
        for us in got {
            latencies.record(Duration::from_micros(us));
        }
    }
    let busy_reads = counting.reads() - busy_from;
    let busy_seconds = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let appended_per_s = expected as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    if delivered < expected * args.subscribers {
        return Err(failed(format!(
            "{delivered} deliveries of {} expected: a subscriber fell silent",
            expected * args.subscribers
        )));
    }
    Ok(Report {
        bench: "live",
        backend: db.backend.name(),
        database: "given",
        writers: args.subscribers,
        batch: 1,
        seconds: serde_json::Number::from(args.seconds),
        events: expected,
        ledger_events_per_s: appended_per_s,
        baseline_events_per_s: args.rate as f64,
        ratio: ratio(appended_per_s, args.rate as f64),
        p50_ms: latencies.percentile_ms(50.0),
        p99_ms: latencies.percentile_ms(99.0),
        baseline_p50_ms: None,
        baseline_p99_ms: None,
        conflicts: 0,
        peak_rss_bytes: peak_rss_bytes(),
        contended: false,
        rounds: 1,
        writer_process: false,
        log_reads_per_s: Some(busy_reads as f64 / busy_seconds),
        idle_log_reads_per_s: Some(idle_reads as f64 / args.idle_seconds.max(1) as f64),
        filters: None,
        projections: None,
    })
}
