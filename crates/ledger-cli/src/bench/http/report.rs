//! The report of `bench http`: the JSON object and the human table.

use serde::Serialize;

use super::{LONG_SHORT_SAMPLES, SHORT_EVENTS};
use crate::bench::{thousandths, whole};
use crate::units;

/// What `bench http` measured; `--json` prints it as one object.
#[derive(Debug, Serialize)]
pub struct HttpReport {
    /// Always `http`.
    pub bench: &'static str,
    /// `postgres` or `sqlite`: the bench's database.
    pub backend: &'static str,
    /// `temporary`, `scratch` or `given`, as in the other benchmarks.
    pub database: &'static str,
    /// `spawned` (a `ledger serve` started by the bench) or `given` (`--url`).
    pub server: &'static str,
    /// Concurrent client connections (and `bench append` writers).
    pub connections: u64,
    /// Seconds of load (and of `bench append`'s phase).
    pub seconds: u64,
    /// Tenants the load picks from.
    pub tenants: u64,
    /// Events on the long tenant's stream.
    pub long_events: u64,
    /// Requests sent during the load.
    pub requests: u64,
    /// Of them, answers other than 200 and transport failures.
    pub errors: u64,
    /// Commands answered 200 per second of load.
    #[serde(serialize_with = "whole")]
    pub commands_per_s: f64,
    /// Median latency of a command, in ms.
    #[serde(serialize_with = "thousandths")]
    pub p50_ms: f64,
    /// 99th-percentile latency of a command, in ms.
    #[serde(serialize_with = "thousandths")]
    pub p99_ms: f64,
    /// `bench append`'s ledger rate: as many writers, batch 1, same database.
    #[serde(serialize_with = "whole")]
    pub append_events_per_s: f64,
    /// `commands_per_s / append_events_per_s`.
    #[serde(serialize_with = "thousandths")]
    pub ratio: f64,
    /// Median latency of a renewal on the long tenant, in ms.
    #[serde(serialize_with = "thousandths")]
    pub long_p50_ms: f64,
    /// Median latency of a renewal on the short tenant, in ms.
    #[serde(serialize_with = "thousandths")]
    pub short_p50_ms: f64,
    /// `long_p50_ms / short_p50_ms`.
    #[serde(serialize_with = "thousandths")]
    pub long_over_short: f64,
    /// Peak resident memory of the server process (VmHWM), when the bench started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

/// The human summary: one row per figure.
pub fn summary(r: &HttpReport) -> String {
    let on = match r.database {
        "temporary" => " (a temporary database, removed)",
        "scratch" => " (a scratch database, dropped)",
        _ => "",
    };
    let server = if r.server == "spawned" {
        "a `ledger serve` started for the run"
    } else {
        "the server of --url"
    };
    let per_s = |v: f64| units::thousands(units::whole(v));
    let rows = [
        (
            "commands/s",
            per_s(r.commands_per_s),
            "acquire-lock renewals answered 200".to_string(),
        ),
        (
            "p50",
            format!("{:.2} ms", r.p50_ms),
            "one command, request to response".into(),
        ),
        ("p99", format!("{:.2} ms", r.p99_ms), String::new()),
        (
            "requests",
            units::thousands(r.requests),
            format!("{} errors", units::thousands(r.errors)),
        ),
        (
            "append events/s",
            per_s(r.append_events_per_s),
            format!(
                "bench append: {} writers, batch 1, same database",
                r.connections
            ),
        ),
        (
            "ratio",
            format!("{:.2}", r.ratio),
            "commands/s / append events/s".into(),
        ),
        (
            "long p50",
            format!("{:.2} ms", r.long_p50_ms),
            format!(
                "a renewal on a stream of {} events",
                units::thousands(r.long_events)
            ),
        ),
        (
            "short p50",
            format!("{:.2} ms", r.short_p50_ms),
            format!("a renewal on a stream of {SHORT_EVENTS} events"),
        ),
        (
            "long / short",
            format!("{:.2}", r.long_over_short),
            format!("{LONG_SHORT_SAMPLES} renewals each, interleaved"),
        ),
        (
            "server peak RSS",
            r.peak_rss_bytes.map_or("-".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1_048_576.0)
            }),
            String::new(),
        ),
    ];
    let mut text = format!(
        "bench http on {}{on}: {} connections for {} s over {} tenants, {server}\n",
        r.backend,
        r.connections,
        r.seconds,
        units::thousands(r.tenants)
    );
    for (name, value, note) in rows {
        let row = format!("  {name:<16} {value:>12}  {note}");
        text += row.trim_end();
        text.push('\n');
    }
    text
}
