//! `ledger bench audit`: audit queries on a log of `--events` onboarding events whose metadata
//! looks like production's (40 tokens, a third of the events on behalf of one of 500 people, a
//! correlation id per pair of events, a request id per event), brought into the audit trail
//! first (timed), then each filter timed `--queries` times through the ledger's search (the
//! trail's index, then the events by position) and, in the same run, as one plain indexed
//! SELECT joining the trail with the events. Filter values come from events picked at random
//! times, so every query finds something.

use chrono::{DateTime, Utc};
use ledger_api::AuditSearch;
use ledger_core::{NewEvent, StoreOptions};
use ledger_projector::ProjectorOptions;
use ledger_read_models::{AuditFilter, Order, TrailRow, audit_trail};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::Report;
use super::rebuild::seed;
use super::stats::{Histogram, peak_rss_bytes, reset_peak_rss};
use crate::args::BenchAuditArgs;
use crate::commands::rebuild::{projection_error, rate};
use crate::database::{self, Database, Target};
use crate::output::CliError;
use crate::units;

/// Events of one generated tenant.
const EVENTS_PER_TENANT: u64 = 10;

/// One filter's figures.
#[derive(Clone, Debug, Serialize)]
pub struct FilterFigures {
    /// The filter, e.g. `tenant + time`.
    pub filter: &'static str,
    /// Events returned per query, on average.
    pub events_per_query: f64,
    /// The ledger's search (trail index, then the events), p50 in ms.
    pub ledger_p50_ms: Option<f64>,
    /// Same, p99.
    pub ledger_p99_ms: Option<f64>,
    /// The plain indexed SELECT, p50 in ms.
    pub baseline_p50_ms: Option<f64>,
    /// Same, p99.
    pub baseline_p99_ms: Option<f64>,
}

/// The filters timed: a name, and the filter built from a sampled event's trail row and a
/// time window around it.
type Make = fn(&TrailRow, (DateTime<Utc>, DateTime<Utc>)) -> (AuditFilter, Order);

/// Every filter alone, the common pairs, a time window, and newest first.
const FILTERS: &[(&str, Make)] = &[
    ("tenant", |r, _| {
        (
            AuditFilter {
                tenant: r.tenant.clone(),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("stream", |r, _| {
        (
            AuditFilter {
                stream: Some(r.stream.clone()),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("category", |r, _| {
        (
            AuditFilter {
                category: Some(r.category.clone()),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("type", |r, _| {
        (
            AuditFilter {
                event_type: Some(r.event_type.clone()),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("actor", |r, _| {
        (
            AuditFilter {
                actor: r.actor.clone(),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("on_behalf_of", |r, _| {
        (
            AuditFilter {
                on_behalf_of: r.on_behalf_of.clone(),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("correlation_id", |r, _| {
        (
            AuditFilter {
                correlation_id: r.correlation_id.clone(),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("request_id", |r, _| {
        (
            AuditFilter {
                request_id: r.request_id.clone(),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("time window", |_, (from, to)| {
        (
            AuditFilter {
                from: Some(from),
                to: Some(to),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("tenant + time", |r, (from, to)| {
        (
            AuditFilter {
                tenant: r.tenant.clone(),
                from: Some(from),
                to: Some(to),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("actor + time", |r, (from, to)| {
        (
            AuditFilter {
                actor: r.actor.clone(),
                from: Some(from),
                to: Some(to),
                ..Default::default()
            },
            Order::Asc,
        )
    }),
    ("actor, newest first", |r, _| {
        (
            AuditFilter {
                actor: r.actor.clone(),
                ..Default::default()
            },
            Order::Desc,
        )
    }),
    ("type + time, newest first", |r, (from, to)| {
        (
            AuditFilter {
                event_type: Some(r.event_type.clone()),
                from: Some(from),
                to: Some(to),
                ..Default::default()
            },
            Order::Desc,
        )
    }),
];

/// The trail every generated event carries: 40 tokens, a third of the events on behalf of one
/// of 500 people, a correlation id per pair of events of a tenant, a request id per event.
fn decorate(tenant: u64, event: usize, e: &mut NewEvent) {
    let mix = tenant.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ event as u64;
    let token = format!("token-{:02}", mix % 40);
    let mut actor =
        json!({"role": if mix.is_multiple_of(4) { "tenant" } else { "admin" }, "token": token});
    if mix.is_multiple_of(3) {
        actor["on_behalf_of"] = json!(format!("user{}@example.com", (mix >> 8) % 500));
    }
    e.metadata = json!({
        "actor": actor,
        "correlation_id": format!("corr-{tenant}-{}", event / 2),
        "request_id": format!("req-{tenant}-{event}"),
    });
}

/// A tiny deterministic generator (xorshift), so runs pick comparable samples.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The trail's first or last row.
async fn end(db: &Database, order: Order) -> Result<Option<TrailRow>, CliError> {
    Ok(audit_trail::page(
        db.projections.as_ref(),
        &AuditFilter::default(),
        order,
        None,
        1,
    )
    .await?
    .pop())
}

/// Seeds the log, brings the trail up to it, then times every filter both ways.
pub async fn run(target: &Target, args: BenchAuditArgs) -> Result<Report, CliError> {
    let db = database::open(target, StoreOptions::default()).await?;
    let have = db.store.log_len().await?;
    if have < args.events {
        seed(
            &db,
            (args.events - have).div_ceil(EVENTS_PER_TENANT),
            decorate,
        )
        .await?;
    }
    let events = db.store.log_len().await?;
    reset_peak_rss();
    let projector = db.projector(ProjectorOptions::default());
    let started = Instant::now();
    let before = db
        .projections
        .checkpoint(audit_trail::SCHEMA.name, ledger_projector::Slot::Live)
        .await?
        .map_or(0, |c| c.events);
    let indexed = projector
        .catch_up(audit_trail::SCHEMA.name)
        .await
        .map_err(projection_error)?;
    let index_rate = rate(indexed.events - before, started.elapsed());
    tracing::info!(events = indexed.events, rate = %units::rate(index_rate), "bench audit: the trail is caught up");

    let (Some(first), Some(last)) = (end(&db, Order::Asc).await?, end(&db, Order::Desc).await?)
    else {
        return Err(CliError::bad_input(
            "empty_log",
            "the log holds no event to search",
        ));
    };
    let span = (last.recorded_at - first.recorded_at)
        .num_microseconds()
        .unwrap_or(0)
        .max(1);
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let limit = args.limit as usize;
    let mut figures = Vec::new();
    for (name, make) in FILTERS {
        let (mut ledger, mut baseline) = (Histogram::new(), Histogram::new());
        let mut returned = 0u64;
        for _ in 0..args.queries {
            // An event at a random time, and a window of 1% of the log's time around it.
            let at =
                first.recorded_at + chrono::Duration::microseconds(rng.below(span as u64) as i64);
            let sample = audit_trail::page(
                db.projections.as_ref(),
                &AuditFilter {
                    from: Some(at),
                    ..Default::default()
                },
                Order::Asc,
                None,
                1,
            )
            .await?
            .pop()
            .unwrap_or_else(|| last.clone());
            let width = chrono::Duration::microseconds((span / 100).max(1));
            let window = (
                sample.recorded_at - width / 2,
                sample.recorded_at + width / 2,
            );
            let (filter, order) = make(&sample, window);
            let search = AuditSearch {
                filter: filter.clone(),
                order,
                after: None,
            };
            let lookup = filter.baseline(order, limit);
            // Alternate which goes first, so neither always finds the cache warm.
            for ledger_first in [returned.is_multiple_of(2), !returned.is_multiple_of(2)] {
                if ledger_first {
                    let t = Instant::now();
                    let page = search
                        .page(db.projections.as_ref(), db.store.as_ref(), limit)
                        .await?;
                    ledger.record(t.elapsed());
                    returned += page.events.len() as u64;
                } else if let Some(lookup) = &lookup {
                    let t = Instant::now();
                    db.store.baseline_lookup(lookup).await?;
                    baseline.record(t.elapsed());
                }
            }
        }
        figures.push(FilterFigures {
            filter: name,
            events_per_query: returned as f64 / args.queries as f64,
            ledger_p50_ms: ledger.percentile_ms(50.0),
            ledger_p99_ms: ledger.percentile_ms(99.0),
            baseline_p50_ms: baseline.percentile_ms(50.0),
            baseline_p99_ms: baseline.percentile_ms(99.0),
        });
    }
    let worst = |f: fn(&FilterFigures) -> Option<f64>| {
        figures
            .iter()
            .filter_map(f)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    Ok(Report {
        bench: "audit",
        backend: db.backend.name(),
        database: "given",
        writers: 1,
        batch: args.limit,
        seconds: serde_json::Number::from_f64(units::thousandths(started.elapsed().as_secs_f64()))
            .unwrap_or_else(|| 0.into()),
        events,
        ledger_events_per_s: index_rate,
        baseline_events_per_s: 0.0,
        ratio: 0.0,
        p50_ms: worst(|f| f.ledger_p50_ms),
        p99_ms: worst(|f| f.ledger_p99_ms),
        baseline_p50_ms: None,
        baseline_p99_ms: None,
        conflicts: 0,
        peak_rss_bytes: peak_rss_bytes(),
        contended: false,
        rounds: args.queries,
        writer_process: false,
        log_reads_per_s: None,
        idle_log_reads_per_s: None,
        filters: Some(figures),
        projections: None,
    })
}

/// The human summary: a table of the filters.
pub fn summary(r: &Report, on: &str) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut text = format!(
        "bench audit on {}{on}: {} events, the trail indexed at {}, {} queries per filter, pages of {}\n",
        r.backend,
        units::thousands(r.events),
        units::rate(r.ledger_events_per_s),
        r.rounds,
        r.batch
    );
    text += &format!(
        "  {:<26} {:>8} {:>11} {:>11} {:>11} {:>11}\n",
        "filter", "events", "ledger p50", "ledger p99", "plain p50", "plain p99"
    );
    for f in r.filters.iter().flatten() {
        text += &format!(
            "  {:<26} {:>8.1} {:>8} ms {:>8} ms {:>8} ms {:>8} ms\n",
            f.filter,
            f.events_per_query,
            ms(f.ledger_p50_ms),
            ms(f.ledger_p99_ms),
            ms(f.baseline_p50_ms),
            ms(f.baseline_p99_ms)
        );
    }
    text += &format!(
        "  worst ledger p99: {} ms; peak RSS {:.1} MiB\n",
        ms(r.p99_ms),
        r.peak_rss_bytes.unwrap_or(0) as f64 / 1_048_576.0
    );
    text
}
