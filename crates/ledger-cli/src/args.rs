//! Command-line arguments (clap definitions). Values whose errors need a specific error code
//! (stream names, expected seqs, JSON, UUIDs) are taken as text here and checked by the command.

use clap::{Args, Parser, Subcommand};

/// The default database: a SQLite file in the working directory, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://ledger.db";

/// The onboarding ledger: an event store on SQLite or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "ledger", version, about, propagate_version = true)]
pub struct Cli {
    /// Database URL: `postgres://...`/`postgresql://...`, `sqlite:...` or a plain SQLite file path.
    #[arg(
        long,
        global = true,
        env = "LEDGER_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        value_name = "URL"
    )]
    pub database_url: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serves the HTTP command API until SIGTERM or SIGINT; prints `{"listening", ...}` once ready.
    Serve(ServeArgs),
    /// Applies the event log's migrations; prints `{"backend","from","to"}`.
    Migrate,
    /// Appends one event to a stream; prints `{"stream","first_seq","last_seq","position"}`.
    Append(AppendArgs),
    /// Prints one stream's events as JSON lines.
    Read(ReadArgs),
    /// Prints the global log's events as JSON lines.
    ReadAll(ReadAllArgs),
    /// Measures the store against plain SQL on the same database.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Rebuilds projections (`tenant_phase`, `onboarding_locks`, `pending_syncs` or `all`) into
    /// fresh tables and swaps them in; `--verify` prints a diff against the live tables instead.
    Rebuild(RebuildArgs),
    /// Runs the projection runners alone (a worker process) until SIGTERM or SIGINT.
    Project(ProjectArgs),
}

/// Arguments of `ledger rebuild`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// `tenant_phase`, `onboarding_locks`, `pending_syncs` or `all`.
    pub projection: String,
    /// Rebuild into shadow tables up to the live checkpoint and print a row-level diff against
    /// the live tables, without swapping; exit 1 when they differ.
    #[arg(long)]
    pub verify: bool,
    /// Most events applied per transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
}

/// Arguments of `ledger project`.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// Most events applied per transaction.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
}

/// Arguments of `ledger serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; port 0 picks a free port (the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// A file holding the admin token, instead of `LEDGER_ADMIN_TOKEN`. With neither, a token is
    /// generated into a 0600 file beside the database (reused on later starts).
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Do not run the projection runners in this process (the queries still read the
    /// projection tables, kept by `ledger project` or another server).
    #[arg(long)]
    pub no_projections: bool,
    /// A bearer token `GET /metrics` then requires (the admin token works too); unset, it is open.
    #[arg(
        long,
        env = "LEDGER_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
}

/// Arguments of `ledger append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The stream, `category-id` (e.g. `tenant-0190c3`).
    pub stream: String,
    /// The seq the stream must be at: a number, `no-stream`/`no_stream`, `exists` or `any`.
    #[arg(long, value_name = "SEQ")]
    pub expected: String,
    /// The event type, e.g. `PaymentVerified`.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// The event's data, a JSON value.
    #[arg(long, value_name = "JSON")]
    pub data: String,
    /// The event's metadata, a JSON object (default `{}`).
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// The event's id (a UUID); a retry with the same id is idempotent. Default: a new UUID v7.
    #[arg(long, value_name = "UUID")]
    pub event_id: Option<String>,
}

/// Arguments of `ledger read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The stream, `category-id`.
    pub stream: String,
    /// First seq to print (seqs start at 1).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub from_seq: u64,
}

/// Arguments of `ledger read-all`.
#[derive(Debug, Args)]
pub struct ReadAllArgs {
    /// Resume after this position (0: from the start).
    #[arg(long, default_value_t = 0, value_name = "P")]
    pub after: u64,
    /// Only streams of this category (the part of the name before the first `-`).
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Only events of this type.
    #[arg(long = "type", value_name = "T")]
    pub event_type: Option<String>,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Concurrent appends through the ledger vs plain INSERTs of the same rows.
    Append(BenchAppendArgs),
    /// A full read of the global log vs one plain SELECT of the same rows.
    Read(BenchReadArgs),
    /// A rebuild of every projection from a generated history vs a raw scan of the same log.
    Rebuild(BenchRebuildArgs),
    /// The projections' live lag (append to visible) at a steady append rate.
    Lag(BenchLagArgs),
}

/// Arguments of `ledger bench rebuild`.
#[derive(Debug, Args)]
pub struct BenchRebuildArgs {
    /// Generated tenants (ten events each) the log must hold; missing ones are appended first.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tenants: u64,
    /// Most events applied per transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
    /// Rounds of (raw scan, rebuild); the figures printed are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench lag`.
#[derive(Debug, Args)]
pub struct BenchLagArgs {
    /// Appends per second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// How long to append, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench append`.
#[derive(Debug, Args)]
pub struct BenchAppendArgs {
    /// Concurrent writer tasks.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub writers: u64,
    /// Events per append.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// Duration of each phase (ledger, then baseline), in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,
    /// All writers race on 4 shared streams; conflicts are counted and retried.
    #[arg(long)]
    pub contended: bool,
    /// Streams each writer rotates over (uncontended mode).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub streams_per_writer: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench read`.
#[derive(Debug, Args)]
pub struct BenchReadArgs {
    /// Events the log must hold; missing ones are appended first.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_append_and_defaults() {
        let cli = Cli::try_parse_from([
            "ledger",
            "append",
            "tenant-x",
            "--expected",
            "no-stream",
            "--type",
            "Noted",
            "--data",
            "{}",
        ])
        .unwrap();
        let Command::Append(a) = cli.command else {
            panic!("not append")
        };
        assert_eq!(
            (a.stream.as_str(), a.expected.as_str()),
            ("tenant-x", "no-stream")
        );
        assert!(a.metadata.is_none() && a.event_id.is_none());
    }

    #[test]
    fn bench_defaults() {
        let cli = Cli::try_parse_from(["ledger", "bench", "append"]).unwrap();
        let Command::Bench(BenchCommand::Append(b)) = cli.command else {
            panic!("not bench append")
        };
        assert_eq!((b.writers, b.batch, b.seconds), (16, 1, 10));
        assert_eq!(b.streams_per_writer, 1000);
        assert!(!b.contended && !b.json);
        assert!(Cli::try_parse_from(["ledger", "bench", "append", "--writers", "0"]).is_err());
    }
}
