//! `ledger bench rebuild`: a generated onboarding history (`--tenants` tenants of ten events
//! each, appended first when the log is shorter) rebuilt into every read model, against a
//! raw scan of the same log (one plain ordered SELECT decoding every column), in one run.
//!
//! Each round times a raw scan and then a whole rebuild, back to back, so the two share the
//! machine's conditions; the figures are medians over the rounds (the ratio is the median of
//! each round's own ratio). The peak RSS is reset after seeding, so it is the peak of the scans
//! and rebuilds: batches are bounded, so it stays flat whatever the log's length.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{TimeZone, Utc};
use ledger_core::{ExpectedSeq, NewEvent, StoreError, StoreOptions, StreamAppend, StreamName};
use ledger_projector::ProjectorOptions;
use ledger_read_models::bench::bench_tenant;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::stats::{median, peak_rss_bytes, reset_peak_rss};
use super::{Report, join_seeders, ratio, seed_progress_bar};
use crate::args::BenchRebuildArgs;
use crate::commands::rebuild::{names as names_of, projection_error, rate};
use crate::database::{self, Database, Target};
use crate::output::CliError;
use crate::units;

/// Events of one generated tenant.
pub(super) const EVENTS_PER_TENANT: u64 = 10;
/// Tenants per seeding transaction.
const TENANTS_PER_APPEND: u64 = 100;
/// Concurrent seeding tasks.
const SEEDERS: u64 = 4;

/// Seeds the log, then times a raw scan and a rebuild of every projection.
pub async fn run(target: &Target, args: BenchRebuildArgs) -> Result<Report, CliError> {
    let options = StoreOptions {
        read_page_size: (args.batch_size as usize).max(1000),
        ..StoreOptions::default()
    };
    let db = database::open(target, options).await?;
    let want = args.tenants * EVENTS_PER_TENANT;
    let have = db.store.log_len().await?;
    if have < want {
        seed(&db, (want - have).div_ceil(EVENTS_PER_TENANT), |_, _, _| {}).await?;
    }
    reset_peak_rss();

    let projector = db.projector(ProjectorOptions {
        rebuild_batch_size: args.batch_size as usize,
        ..ProjectorOptions::default()
    });
    let names = projection_list(&args.projections)?;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let started = Instant::now();
        let scanned = db.store.baseline_scan().await?;
        let scan_rate = rate(scanned, started.elapsed());
        // A rebuild resumes an interrupted one; the bench times a whole one.
        for model in projector.catalog().models() {
            if !names.contains(&model.schema().name) {
                continue;
            }
            db.projections
                .drop_rebuild(model.schema())
                .await
                .map_err(CliError::Store)?;
        }
        let report = projector
            .rebuild(&names, &mut |_| {})
            .await
            .map_err(projection_error)?;
        // Events of the log made readable in every read model, per second (read models that
        // read other events rebuild in passes of their own, all within `elapsed`).
        let rebuild_rate = rate(scanned, report.elapsed);
        let round_ratio = ratio(rebuild_rate, scan_rate);
        tracing::info!(
            round,
            rebuild = %units::rate(rebuild_rate),
            scan = %units::rate(scan_rate),
            ratio = %format!("{round_ratio:.3}"),
            "bench rebuild: round done"
        );
        rounds.push(Round {
            events: scanned,
            seconds: report.elapsed.as_secs_f64(),
            rebuild: rebuild_rate,
            scan: scan_rate,
            ratio: round_ratio,
        });
    }
    let of_rounds = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    Ok(Report {
        bench: "rebuild",
        backend: db.backend.name(),
        database: "given",
        writers: 1,
        batch: args.batch_size,
        seconds: serde_json::Number::from_f64(units::thousandths(of_rounds(|r| r.seconds)))
            .unwrap_or_else(|| 0.into()),
        events: rounds.iter().map(|r| r.events).max().unwrap_or(0),
        ledger_events_per_s: of_rounds(|r| r.rebuild),
        baseline_events_per_s: of_rounds(|r| r.scan),
        ratio: of_rounds(|r| r.ratio),
        p50_ms: None,
        p99_ms: None,
        baseline_p50_ms: None,
        baseline_p99_ms: None,
        conflicts: 0,
        peak_rss_bytes: peak_rss_bytes(),
        contended: false,
        rounds: args.rounds,
        writer_process: false,
        log_reads_per_s: None,
        idle_log_reads_per_s: None,
        filters: None,
        projections: Some(names.join(",")),
    })
}

/// The read models a `--projections` list names: `all`, or names separated by commas.
pub(super) fn projection_list(list: &str) -> Result<Vec<&'static str>, CliError> {
    let mut names = Vec::new();
    for name in list.split(',') {
        for n in names_of(name.trim())? {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    Ok(names)
}

/// The figures of one round: a raw scan, then a whole rebuild, back to back.
struct Round {
    events: u64,
    seconds: f64,
    rebuild: f64,
    scan: f64,
    ratio: f64,
}

/// Appends `tenants` generated tenants (ten events each, in their own `tenant-<id>` streams),
/// a hundred tenants per atomic multi-stream append, from a few concurrent tasks; `decorate`
/// may change each event (tenant number, event number within the tenant, the event) first.
pub(super) async fn seed(
    db: &Database,
    tenants: u64,
    decorate: fn(u64, usize, &mut NewEvent),
) -> Result<(), CliError> {
    tracing::info!(tenants, "bench rebuild: seeding the log");
    let bar = seed_progress_bar(tenants * EVENTS_PER_TENANT);
    let run = Uuid::now_v7().as_u128();
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let chunks = tenants.div_ceil(TENANTS_PER_APPEND);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..SEEDERS {
        let (store, next, bar) = (db.store.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                if chunk >= chunks {
                    return Ok::<(), StoreError>(());
                }
                let first = chunk * TENANTS_PER_APPEND;
                let last = (first + TENANTS_PER_APPEND).min(tenants);
                let appends = (first..last)
                    .map(|i| {
                        let id = Uuid::from_u128(run ^ u128::from(i));
                        let stream = StreamName::from_parts("tenant", &id.to_string())
                            .expect("a uuid is a valid stream id");
                        let at = start + chrono::Duration::seconds(i as i64);
                        let mut events = bench_tenant(at, i as usize);
                        for (j, event) in events.iter_mut().enumerate() {
                            decorate(i, j, event);
                        }
                        StreamAppend::new(stream, ExpectedSeq::NoStream, events)
                    })
                    .collect();
                store.append_multi(appends).await?;
                bar.inc((last - first) * EVENTS_PER_TENANT);
            }
        });
    }
    join_seeders(tasks, bar).await
}
