//! `ledger bench verify`: `ledger verify`'s walk of every hash chain against one plain SELECT
//! of the same rows in the same order, round by round on one seeded log.

use std::time::{Duration, Instant};

use ledger_core::StoreOptions;
use ledger_core::chain::ChainScope;
use ledger_core::verify::PinChecker;

use super::rebuild::{EVENTS_PER_TENANT, seed};
use super::stats::{peak_rss_bytes, reset_peak_rss};
use super::{Report, ratio};
use crate::args::BenchVerifyArgs;
use crate::commands::verify::walk;
use crate::database::{self, Target};
use crate::output::CliError;
use crate::units;

/// Seeds the log up to `--tenants` tenants of ten events, then alternates a raw scan and a
/// walk of every chain; the figures are the medians.
pub async fn run(target: &Target, args: BenchVerifyArgs) -> Result<Report, CliError> {
    let db = database::open(target, StoreOptions::default()).await?;
    let want = args.tenants * EVENTS_PER_TENANT;
    let have = db.store.log_len().await?;
    if have < want {
        seed(&db, (want - have).div_ceil(EVENTS_PER_TENANT), |_, _, _| {}).await?;
    }
    reset_peak_rss();
    let mut rounds = Vec::new();
    let mut events = 0;
    for _ in 0..args.rounds {
        let started = Instant::now();
        let scanned = db.store.baseline_chain_scan().await?;
        let scan = rate(scanned, started.elapsed());
        let started = Instant::now();
        let mut breaks = 0u64;
        let mut pins = PinChecker::default();
        let (_, walked) = walk(
            &*db.store,
            ChainScope::default(),
            true,
            &mut None,
            &mut pins,
            |found| {
                breaks += found.len() as u64;
                Ok(())
            },
        )
        .await?;
        let elapsed = started.elapsed();
        if breaks > 0 {
            return Err(CliError::Failed {
                code: "chain_broken",
                message: format!("the benchmark's own log has {breaks} broken link(s)"),
            });
        }
        events = walked;
        rounds.push((rate(walked, elapsed), scan, elapsed));
    }
    let median = |pick: fn(&(f64, f64, Duration)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ledger, baseline) = (median(|r| r.0), median(|r| r.1));
    let ratios = median(|r| ratio(r.0, r.1));
    let seconds = median(|r| r.2.as_secs_f64());
    Ok(Report {
        bench: "verify",
        backend: db.backend.name(),
        database: "given",
        writers: 1,
        batch: EVENTS_PER_TENANT,
        seconds: serde_json::Number::from_f64(units::seconds(Duration::from_secs_f64(seconds)))
            .unwrap_or_else(|| 0.into()),
        events,
        ledger_events_per_s: ledger,
        baseline_events_per_s: baseline,
        ratio: ratios,
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
        projections: None,
    })
}

/// Events per second.
fn rate(events: u64, elapsed: Duration) -> f64 {
    crate::commands::rebuild::rate(events, elapsed)
}
