//! The HTTP phases of `bench http`: the tenants registered, the long and the short stream
//! grown, the load of concurrent renewals, then renewals on the long and the short tenant.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{Client, Endpoint};
use super::{LONG_SHORT_SAMPLES, SHORT_EVENTS};
use crate::args::BenchHttpArgs;
use crate::bench::stats::Histogram;
use crate::output::CliError;

/// The lock holder of every command.
const BODY: &str = r#"{"holder":"bench"}"#;

/// What the HTTP phases measured.
pub struct Figures {
    /// Requests sent during the load.
    pub requests: u64,
    /// Of them, answers other than 200 and transport failures.
    pub errors: u64,
    /// Commands answered 200 per second of load.
    pub commands_per_s: f64,
    /// The latencies of the load's commands answered 200.
    pub latencies: Histogram,
    /// The latencies of the renewals on the long tenant.
    pub long: Histogram,
    /// The latencies of the renewals on the short tenant.
    pub short: Histogram,
}

/// Setup, load, then long vs short.
pub async fn over_http(endpoint: &Endpoint, args: &BenchHttpArgs) -> Result<Figures, CliError> {
    let run = Uuid::now_v7().simple().to_string();
    let tag = &run[run.len() - 10..];
    tracing::info!(tenants = args.tenants, "bench http: registering tenants");
    let tenants = register_all(endpoint, tag, args.tenants, args.connections).await?;
    let mut client = Client::new(endpoint.clone());
    let long = register(&mut client, &format!("b{tag}-long"), 0).await?;
    let short = register(&mut client, &format!("b{tag}-short"), 0).await?;
    tracing::info!(
        events = args.long_events,
        "bench http: growing the long tenant"
    );
    // The registration is the stream's first event; each renewal adds one.
    for _ in 1..args.long_events {
        renew(&mut client, &long).await?;
    }
    for _ in 1..SHORT_EVENTS {
        renew(&mut client, &short).await?;
    }
    tracing::info!(connections = args.connections, "bench http: load");
    let load = load(endpoint, tenants, args.connections, args.seconds).await?;
    tracing::info!("bench http: long vs short");
    let (mut long_h, mut short_h) = (Histogram::new(), Histogram::new());
    for _ in 0..LONG_SHORT_SAMPLES {
        long_h.record(renew(&mut client, &long).await?);
        short_h.record(renew(&mut client, &short).await?);
    }
    Ok(Figures {
        long: long_h,
        short: short_h,
        ..load
    })
}

/// Registers `count` tenants over `connections` connections and has each take its lock;
/// returns their command paths.
async fn register_all(
    endpoint: &Endpoint,
    tag: &str,
    count: u64,
    connections: u64,
) -> Result<Vec<String>, CliError> {
    let mut tasks = JoinSet::new();
    for c in 0..connections.min(count) {
        let (endpoint, tag) = (endpoint.clone(), tag.to_string());
        tasks.spawn(async move {
            let mut client = Client::new(endpoint);
            let mut paths = Vec::new();
            for i in (c..count).step_by(connections as usize) {
                let path = register(&mut client, &format!("b{tag}-{i}"), 1).await?;
                paths.push(path);
            }
            Ok::<_, CliError>(paths)
        });
    }
    let mut all = Vec::with_capacity(count as usize);
    while let Some(joined) = tasks.join_next().await {
        let paths = joined
            .map_err(|e| CliError::from(anyhow::anyhow!("a registering task failed: {e}")))??;
        all.extend(paths);
    }
    Ok(all)
}

/// Registers a tenant and has it take its lock `locks` times; returns its command's path.
async fn register(client: &mut Client, slug: &str, locks: u64) -> Result<String, CliError> {
    let body = serde_json::json!({ "slug": slug, "name": format!("Bench {slug}") }).to_string();
    let response = client.post("/v1/tenants", &body).await.map_err(transport)?;
    if response.status != 201 {
        return Err(refused("POST /v1/tenants", response.status, &response.body));
    }
    let id = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v["tenant_id"].as_str().map(str::to_string))
        .ok_or_else(|| CliError::Failed {
            code: "unexpected_answer",
            message: "POST /v1/tenants answered without a tenant_id".into(),
        })?;
    let path = format!("/v1/tenants/{id}/commands/acquire-lock");
    for _ in 0..locks {
        renew(client, &path).await?;
    }
    Ok(path)
}

/// One acquire-lock (a renewal after the first) that must answer 200; returns its latency.
async fn renew(client: &mut Client, path: &str) -> Result<Duration, CliError> {
    let started = Instant::now();
    let response = client.post(path, BODY).await.map_err(transport)?;
    let took = started.elapsed();
    if response.status != 200 {
        return Err(refused(path, response.status, &response.body));
    }
    Ok(took)
}

/// `connections` clients renewing random tenants' locks for `seconds`.
async fn load(
    endpoint: &Endpoint,
    tenants: Vec<String>,
    connections: u64,
    seconds: u64,
) -> Result<Figures, CliError> {
    let tenants = Arc::new(tenants);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = JoinSet::new();
    for c in 0..connections {
        let (endpoint, tenants) = (endpoint.clone(), tenants.clone());
        tasks.spawn(async move {
            let mut client = Client::new(endpoint);
            let mut rng = SplitMix(Uuid::now_v7().as_u128() as u64 ^ c.rotate_left(32));
            let (mut requests, mut errors, mut latencies) = (0u64, 0u64, Histogram::new());
            while Instant::now() < deadline {
                let path = &tenants[(rng.next() % tenants.len() as u64) as usize];
                let started = Instant::now();
                let answer = client.post(path, BODY).await;
                requests += 1;
                match answer {
                    Ok(r) if r.status == 200 => latencies.record(started.elapsed()),
                    Ok(r) => {
                        errors += 1;
                        tracing::debug!(status = r.status, "bench http: a command failed");
                    }
                    Err(e) => {
                        errors += 1;
                        tracing::debug!(error = %e, "bench http: a request failed");
                        // A server gone away must not make this a busy loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (requests, errors, latencies)
        });
    }
    let (mut requests, mut errors, mut latencies) = (0, 0, Histogram::new());
    while let Some(joined) = tasks.join_next().await {
        let (r, e, l) =
            joined.map_err(|e| CliError::from(anyhow::anyhow!("a client task failed: {e}")))?;
        requests += r;
        errors += e;
        latencies.merge(&l);
    }
    let elapsed = start.elapsed().as_secs_f64().max(f64::EPSILON);
    Ok(Figures {
        requests,
        errors,
        commands_per_s: (requests - errors) as f64 / elapsed,
        latencies,
        long: Histogram::new(),
        short: Histogram::new(),
    })
}

/// A request that got no answer.
fn transport(e: String) -> CliError {
    CliError::Failed {
        code: "server_unreachable",
        message: e,
    }
}

/// A request answered with another status than expected.
fn refused(what: &str, status: u16, body: &[u8]) -> CliError {
    let text = String::from_utf8_lossy(body);
    CliError::Failed {
        code: "unexpected_answer",
        message: format!(
            "{what} answered {status}: {}",
            text.chars().take(300).collect::<String>()
        ),
    }
}

/// A small, fast pseudo-random sequence (SplitMix64): the tenant each request picks.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_spread_over_the_tenants() {
        let mut rng = SplitMix(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[(rng.next() % 10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
