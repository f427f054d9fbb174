//! `ledger bench http`: onboarding commands through a real `ledger serve`, over HTTP/1.1 with
//! kept-alive connections, against `bench append`'s appends at the same concurrency on the same
//! backend.
//!
//! One run: start a server on the bench's database (unless `--url` names one), register the
//! tenants and have each take its lock, grow one tenant's stream long and keep one short; then
//! `--connections` clients renew random tenants' locks for `--seconds`; then renewals on the
//! long and the short tenant in turn (does a command cost more on a long stream?); the server
//! is stopped, and `bench append` measures the raw append rate on the same database.

mod client;
mod load;
mod report;
mod server;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use self::client::Endpoint;
use self::load::over_http;
use self::report::{HttpReport, summary};
use self::server::Server;
use super::stats::Histogram;
use super::{Place, ratio};
use crate::args::{BenchAppendArgs, BenchDatabaseArgs, BenchHttpArgs};
use crate::database::Target;
use crate::output::{CliError, print_json};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Events on the short tenant's stream.
const SHORT_EVENTS: u64 = 10;

/// Renewals timed on each of the long and the short tenant.
const LONG_SHORT_SAMPLES: u64 = 200;

/// Runs `bench http` on the database its flags select and prints the report.
pub async fn run(target: &Target, args: &BenchHttpArgs) -> Result<(), CliError> {
    let place = Place::prepare(target, &args.database).await?;
    let interrupted = ledger_api::shutdown_signal();
    let json = args.json;
    let outcome = tokio::select! {
        outcome = measure(place.target(), args) => outcome,
        () = interrupted => Err(CliError::Failed {
            code: "interrupted",
            message: "the benchmark was interrupted".into(),
        }),
    };
    let database = place.kind();
    place.remove().await;
    let mut report = outcome?;
    report.database = database;
    if json {
        print_json(&report)
    } else {
        super::write_out(&summary(&report))
    }
}

/// Starts (or finds) the server, measures over HTTP, stops it, then measures appends.
async fn measure(target: &Target, args: &BenchHttpArgs) -> Result<HttpReport, CliError> {
    let (server, endpoint) = match &args.url {
        Some(url) => {
            let token = args.token.clone().filter(|t| !t.trim().is_empty());
            let Some(token) = token else {
                return Err(CliError::bad_input(
                    "token_needed",
                    "--url names a running server: pass its admin token with --token or LEDGER_ADMIN_TOKEN",
                ));
            };
            let endpoint = Endpoint {
                addr: server_addr(url)?,
                token: token.trim().to_string(),
                timeout: REQUEST_TIMEOUT,
            };
            (None, endpoint)
        }
        None => {
            let server = Server::start(target, args.group).await?;
            let endpoint = Endpoint {
                addr: server.addr,
                token: server.token.clone(),
                timeout: REQUEST_TIMEOUT,
            };
            (Some(server), endpoint)
        }
    };
    let measured = over_http(&endpoint, args).await;
    let peak_rss_bytes = server.as_ref().and_then(Server::peak_rss_bytes);
    if let Some(server) = server {
        server.stop().await;
    }
    let figures = measured?;
    tracing::info!("bench http: the append reference");
    let append = super::append::run(
        target,
        BenchAppendArgs {
            database: BenchDatabaseArgs {
                scratch: false,
                allow_existing: true,
            },
            writers: args.connections,
            batch: 1,
            seconds: args.seconds,
            contended: false,
            streams_per_writer: 1000,
            rounds: 1,
            json: false,
            group: args.group,
        },
    )
    .await?;
    let p50 = |h: &Histogram| h.percentile_ms(50.0).unwrap_or(0.0);
    let (long_p50_ms, short_p50_ms) = (p50(&figures.long), p50(&figures.short));
    Ok(HttpReport {
        bench: "http",
        backend: target.backend.name(),
        database: "given",
        server: if args.url.is_some() {
            "given"
        } else {
            "spawned"
        },
        connections: args.connections,
        seconds: args.seconds,
        tenants: args.tenants,
        long_events: args.long_events,
        requests: figures.requests,
        errors: figures.errors,
        commands_per_s: figures.commands_per_s,
        p50_ms: p50(&figures.latencies),
        p99_ms: figures.latencies.percentile_ms(99.0).unwrap_or(0.0),
        append_events_per_s: append.ledger_events_per_s,
        ratio: ratio(figures.commands_per_s, append.ledger_events_per_s),
        long_p50_ms,
        short_p50_ms,
        long_over_short: ratio(long_p50_ms, short_p50_ms),
        peak_rss_bytes,
    })
}

/// The address of `--url`: `http://host:port` (or `host:port`).
fn server_addr(url: &str) -> Result<SocketAddr, CliError> {
    let bad = |why: &str| {
        CliError::bad_input(
            "invalid_url",
            format!("--url {url:?} {why}: pass the server's address, e.g. http://127.0.0.1:8080"),
        )
    };
    if url.starts_with("https://") {
        return Err(bad("is HTTPS, which the bench does not speak"));
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or("");
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| bad("names no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_addresses() {
        let addr = server_addr("http://127.0.0.1:8080/").unwrap();
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(server_addr("127.0.0.1:9").unwrap().port(), 9);
        assert!(server_addr("https://127.0.0.1:443").is_err());
        assert!(server_addr("http://").is_err());
    }
}
