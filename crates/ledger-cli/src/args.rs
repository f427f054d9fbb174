//! Command-line arguments (clap definitions). Values whose errors need a specific error code
//! (stream names, expected seqs, JSON, UUIDs) are taken as text here and checked by the command.

use clap::{Args, Parser, Subcommand};
use ledger_api::{ApiConfig, ConnectionLimits};
use ledger_core::GroupLimits;

/// The default database: a SQLite file in the working directory, created by `serve`, `migrate`
/// or `append`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://ledger.db";

/// The onboarding ledger: an event store on SQLite or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "ledger", version, about, propagate_version = true)]
pub struct Cli {
    /// Database URL: `postgres://...`/`postgresql://...`, `sqlite:...` or a plain SQLite file
    /// path [default: sqlite://ledger.db; `bench`: a temporary database].
    #[arg(long, global = true, env = "LEDGER_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,

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
    /// Measures the store against plain SQL, on a throwaway database unless told otherwise.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Rebuilds projections into fresh tables and swaps them in (or verifies them).
    ///
    /// The projection is `tenant_phase`, `onboarding_locks`, `pending_syncs` or `all`;
    /// `--verify` prints a diff against the live tables instead of swapping.
    Rebuild(RebuildArgs),
    /// Runs the projection runners alone (a worker process) until SIGTERM or SIGINT.
    Project(ProjectArgs),
    /// Issues, revokes and lists the admin tokens stored in the database.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Reads a tenant's history: its state as of any instant, its timeline in words.
    #[command(subcommand)]
    Audit(crate::commands::audit::AuditCommand),
    /// Walks every stream's hash chain and prints each broken link as a JSON line, then a
    /// summary; exit 1 on any break.
    Verify(VerifyArgs),
    /// Prints the log in position order as JSON lines: envelopes, hashes and data as stored
    /// (personal fields sealed; the tenants' keys only with `--with-keys`).
    Export(ExportArgs),
    /// Loads a `ledger export` file into an empty database, checking every chain as it goes,
    /// then rebuilds the read models.
    Import(ImportArgs),
    /// Erases a tenant's personal data: appends `TenantErased` and destroys its data key, so
    /// its personal fields read `[erased]` everywhere; prints what it did.
    Erase(EraseArgs),
}

/// Arguments of `ledger erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The tenant's id.
    pub tenant: String,
}

/// Arguments of `ledger verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this stream's chain.
    #[arg(long, value_name = "STREAM")]
    pub stream: Option<String>,
    /// Only events after this position (each stream's first such event is trusted to link to
    /// the one before it).
    #[arg(long, default_value_t = 0, value_name = "POSITION")]
    pub since: u64,
    /// A file of pinned heads (`{"stream","seq","hash"}` per line, or a JSON array): each must
    /// still be on its stream's chain.
    #[arg(long, value_name = "FILE")]
    pub heads: Option<String>,
    /// Also write every walked stream's head to this file, to pin them.
    #[arg(long, value_name = "FILE")]
    pub write_heads: Option<String>,
}

/// Arguments of `ledger export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only events after this position.
    #[arg(long, default_value_t = 0, value_name = "POSITION")]
    pub since: u64,
    /// Also write the tenants' data keys (first, one `{"data_key": ...}` line each): without
    /// them the export is erased for every tenant.
    #[arg(long)]
    pub with_keys: bool,
}

/// Arguments of `ledger import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file `ledger export` wrote, or `-` for stdin.
    pub file: String,
}

/// The admin token commands; they work on the database directly, so a running server need not
/// be restarted: it sees a revocation within a second.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issues a token and prints it once (only its hash is stored).
    Issue(TokenIssueArgs),
    /// Revokes a token by name or id; every server refuses it within a second.
    Revoke(TokenRevokeArgs),
    /// Prints every stored token as JSON lines: id, name, role, created_at, revoked (never a
    /// token or its hash).
    List,
}

/// What a stored token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// Every resource.
    Admin,
    /// Reads every tenant's events and read models; writes nothing.
    Auditor,
}

/// Arguments of `ledger token issue`.
#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// What the token may do.
    #[arg(long, value_enum, default_value = "admin")]
    pub role: TokenRole,
    /// A name for the token, unique among those not revoked (letters, digits, `.`, `_`, `-`).
    #[arg(long)]
    pub name: String,
}

/// Arguments of `ledger token revoke`.
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's name or id (see `ledger token list`).
    #[arg(value_name = "NAME|ID")]
    pub token: String,
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
    /// How often a caught-up runner looks for new events when nothing woke it, e.g. `1s`,
    /// `1h` [default: 1s]. Appends of other processes wake the runners at once (PostgreSQL:
    /// the writers notify after their commits; SQLite: a watch on the file), so this only
    /// bounds the delay when a wake-up is lost.
    #[arg(long, value_name = "DURATION", value_parser = crate::units::positive_duration)]
    pub poll_interval: Option<humantime::Duration>,
}

/// Arguments of `ledger serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; port 0 picks a free port (the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// A file holding an admin token, instead of `LEDGER_ADMIN_TOKEN`; either is stored in the
    /// database (as `bootstrap`). With neither, a database's first start generates one into a
    /// 0600 file `<database>.admin-token` (reused on later starts).
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Do not run the projection runners in this process (the queries still read the
    /// projection tables, kept by `ledger project` or another server).
    #[arg(long)]
    pub no_projections: bool,
    /// Apply the event log's migrations before serving (e.g. a first start on an empty
    /// PostgreSQL database), as `ledger migrate` does.
    #[arg(long)]
    pub migrate: bool,
    /// How long an onboarding lock lasts after it is acquired or renewed, e.g. `60s`, `5m`.
    #[arg(long, env = "LEDGER_LOCK_TTL", default_value = "60s", value_name = "DURATION", value_parser = crate::units::parse_policy)]
    pub lock_ttl: std::time::Duration,
    /// How long an issued API key may be revealed to the user, e.g. `2h`, `30m`.
    #[arg(long, env = "LEDGER_REVEAL_WINDOW", default_value = "2h", value_name = "DURATION", value_parser = crate::units::parse_policy)]
    pub reveal_window: std::time::Duration,
    /// Longest a request's headers may take, from their first byte.
    #[arg(long, env = "LEDGER_HEADER_TIMEOUT", value_name = "DURATION", value_parser = crate::units::duration,
          default_value_t = ConnectionLimits::DEFAULT.header_timeout.into())]
    pub header_timeout: humantime::Duration,
    /// Longest pause while a request body arrives (then 408 `body_timeout`).
    #[arg(long, env = "LEDGER_BODY_TIMEOUT", value_name = "DURATION", value_parser = crate::units::duration,
          default_value_t = ApiConfig::default().body_timeout.into())]
    pub body_timeout: humantime::Duration,
    /// Longest a connection may wait for a request: a new one for its first byte, a kept-alive
    /// one after its previous response.
    #[arg(long, env = "LEDGER_IDLE_TIMEOUT", value_name = "DURATION", value_parser = crate::units::duration,
          default_value_t = ConnectionLimits::DEFAULT.idle_timeout.into())]
    pub idle_timeout: humantime::Duration,
    /// Longest wait for a request's answer (then 503 `request_timeout`); event streams are only
    /// ended by shutdown.
    #[arg(long, env = "LEDGER_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = crate::units::duration,
          default_value_t = ApiConfig::default().request_timeout.into())]
    pub request_timeout: humantime::Duration,
    /// Most connections open at once; more wait until one closes [default: 1024, or fewer when
    /// the open-file limit (`ulimit -n`) leaves too little room]
    #[arg(long, env = "LEDGER_MAX_CONNECTIONS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// How long shutdown (SIGTERM, Ctrl-C) waits for requests in flight before it closes them.
    #[arg(long, env = "LEDGER_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = crate::units::duration,
          default_value_t = ConnectionLimits::DEFAULT.shutdown_grace.into())]
    pub shutdown_grace: humantime::Duration,
    /// How long a request waits for a PostgreSQL connection (a free one or a new one) before
    /// it answers 503 `unavailable`.
    #[arg(long, env = "LEDGER_DB_ACQUIRE_TIMEOUT", value_name = "DURATION", value_parser = crate::units::positive_duration,
          default_value_t = ledger_core::StoreOptions::DEFAULT_ACQUIRE_TIMEOUT.into())]
    pub db_acquire_timeout: humantime::Duration,
    /// A bearer token `GET /metrics` then requires (the admin token works too); unset, it is open.
    #[arg(
        long,
        env = "LEDGER_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// Tenants whose folded state commands keep in memory and decide on, so a command on one
    /// costs one append whatever its stream's length (0: every command reads its stream).
    #[arg(
        long,
        env = "LEDGER_STATE_CACHE",
        value_name = "TENANTS",
        default_value_t = 10_000
    )]
    pub state_cache: usize,
    /// How concurrent appends are committed together.
    #[command(flatten)]
    pub group: GroupArgs,
    /// How long a console session (`/ui`) lasts after signing in, e.g. `8h`.
    #[arg(long, env = "LEDGER_SESSION_TTL", value_name = "DURATION", value_parser = crate::units::positive_duration,
          default_value_t = ApiConfig::default().session_ttl.into())]
    pub session_ttl: humantime::Duration,
    /// How long a progress link works when its request names no time, e.g. `2h`.
    #[arg(long, env = "LEDGER_PROGRESS_LINK_TTL", value_name = "DURATION", value_parser = crate::units::link_ttl,
          default_value_t = ApiConfig::default().progress_link_ttl.into())]
    pub progress_link_ttl: humantime::Duration,
    /// The console's address as its users reach it, e.g. `https://ledger.example.com`: the start
    /// of progress links (default: `http://` and the request's Host); `https` makes the session
    /// cookie Secure.
    #[arg(long, env = "LEDGER_PUBLIC_URL", value_name = "URL", value_parser = crate::units::public_url)]
    pub public_url: Option<String>,
}

/// Group commit: how many concurrent appends of this process one transaction may carry, and how
/// many such transactions run at once.
#[derive(Clone, Copy, Debug, Args)]
pub struct GroupArgs {
    /// Most appends one transaction of the group commit carries (1: every append is written
    /// alone, as it arrives).
    #[arg(long, env = "LEDGER_GROUP_MAX_APPENDS", value_name = "N",
          default_value_t = GroupLimits::default().max_appends as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub group_max_appends: u64,
    /// Groups written at once, each on its own connection (SQLite, with its one writer
    /// connection, writes one at a time whatever this says).
    #[arg(long, env = "LEDGER_GROUP_IN_FLIGHT", value_name = "N",
          default_value_t = GroupLimits::default().in_flight as u64,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub group_in_flight: u64,
}

impl GroupArgs {
    /// The store's group limits with these values.
    pub fn limits(&self) -> GroupLimits {
        GroupLimits {
            max_appends: self.group_max_appends as usize,
            in_flight: self.group_in_flight as usize,
            ..GroupLimits::default()
        }
    }
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

/// Which database a benchmark runs on. Without `--database-url` it is a temporary SQLite file,
/// removed afterwards; a benchmark never writes into a database that holds events unless told to.
#[derive(Debug, Args)]
pub struct BenchDatabaseArgs {
    /// Create a fresh database on the PostgreSQL server of `--database-url` for this run and
    /// drop it afterwards.
    #[arg(long, conflicts_with = "allow_existing")]
    pub scratch: bool,
    /// Run on the `--database-url` database although it already holds events (the benchmark's
    /// events are appended to it and can never be deleted).
    #[arg(long)]
    pub allow_existing: bool,
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
    /// Live log subscribers: delivery latency at a steady append rate, and their reads of the
    /// log, idle and busy.
    Live(BenchLiveArgs),
    /// Audit queries on a seeded log: p50/p99 per filter through the ledger's search, and the
    /// same lookup as one plain indexed SELECT.
    Audit(BenchAuditArgs),
    /// `ledger verify`'s walk of every hash chain vs a plain SELECT of the same rows in the
    /// same order.
    Verify(BenchVerifyArgs),
    /// Onboarding commands over HTTP against a `ledger serve` (started for the run unless
    /// `--url`), vs `bench append` at the same concurrency on the same backend.
    Http(BenchHttpArgs),
    /// The appending side of `bench lag --writer-process`: appends to the `--database-url`
    /// database at a steady rate and prints one JSON line per append (not for direct use).
    #[command(hide = true)]
    LagWriter(BenchLagWriterArgs),
}

/// Arguments of `ledger bench http`.
#[derive(Debug, Args)]
pub struct BenchHttpArgs {
    /// The database to run on (the started server's, and `bench append`'s).
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
    /// Concurrent client connections, kept alive (and `bench append` writers).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub connections: u64,
    /// How long the load runs (and `bench append`'s phase), in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Tenants registered, each holding its lock; every request renews a random one's.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub tenants: u64,
    /// Events on the long tenant's stream, grown by lock renewals before the load.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(11..=1_000_000))]
    pub long_events: u64,
    /// A running server to bench instead of starting one, e.g. `http://127.0.0.1:8080`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The admin token of the `--url` server (unused without `--url`: the started server gets
    /// a generated one).
    #[arg(long, env = "LEDGER_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
    /// How concurrent appends are committed together (the server's and `bench append`'s).
    #[command(flatten)]
    pub group: GroupArgs,
}

/// Arguments of `ledger bench verify`.
#[derive(Debug, Args)]
pub struct BenchVerifyArgs {
    /// The database to run on.
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
    /// Generated tenants (ten events each) the log must hold; missing ones are appended first.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tenants: u64,
    /// Rounds of (raw scan, verify); the figures printed are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench rebuild`.
#[derive(Debug, Args)]
pub struct BenchRebuildArgs {
    /// The database to run on.
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
    /// Generated tenants (ten events each) the log must hold; missing ones are appended first.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tenants: u64,
    /// Most events applied per transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
    /// Rounds of (raw scan, rebuild); the figures printed are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// The read models rebuilt: `all`, or names separated by commas.
    #[arg(long, default_value = "all")]
    pub projections: String,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench lag`.
#[derive(Debug, Args)]
pub struct BenchLagArgs {
    /// The database to run on.
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
    /// Appends per second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// How long to append, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Append from another process: a child `ledger` (this same binary) appends at the rate
    /// while the runners run here, so every event reaches them through the cross-process
    /// wake-up (PostgreSQL: a notification after the writer's commit; SQLite: the watch on
    /// the file), as events of a `ledger serve` reach a `ledger project` worker. Without it
    /// the writer is in this process and wakes the runners in process.
    #[arg(long)]
    pub writer_process: bool,
    /// The read models followed: `all`, or names separated by commas.
    #[arg(long, default_value = "all")]
    pub projections: String,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench live`.
#[derive(Debug, Args)]
pub struct BenchLiveArgs {
    /// The database to run on.
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
    /// Appends per second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// How long to append, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Live subscribers connected (each gets every event).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub subscribers: u64,
    /// How long the reads of the log are counted before appending, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_seconds: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench audit`.
#[derive(Debug, Args)]
pub struct BenchAuditArgs {
    /// The database to run on.
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
    /// Events the log must hold (ten per generated tenant); missing ones are appended first.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub events: u64,
    /// Queries timed per filter (each through the ledger and as plain SQL).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub queries: u64,
    /// Events per page asked.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench lag-writer`.
#[derive(Debug, Args)]
pub struct BenchLagWriterArgs {
    /// Appends per second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// How long to append, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
}

/// Arguments of `ledger bench append`.
#[derive(Debug, Args)]
pub struct BenchAppendArgs {
    /// The database to run on.
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
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
    /// Rounds of (ledger, baseline), each phase `--seconds` long; the figures printed are
    /// medians over the rounds (the ratio is the median of each round's own pair), so a
    /// shared machine's swings weigh less.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// How concurrent appends are committed together.
    #[command(flatten)]
    pub group: GroupArgs,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ledger bench read`.
#[derive(Debug, Args)]
pub struct BenchReadArgs {
    /// The database to run on.
    #[command(flatten)]
    pub database: BenchDatabaseArgs,
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
    fn the_acquire_timeout_is_a_positive_duration() {
        let serve = |extra: &[&str]| {
            let args = [&["ledger", "serve"], extra].concat();
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Serve(s) => std::time::Duration::from(s.db_acquire_timeout),
                _ => panic!("not serve"),
            })
        };
        let default = ledger_core::StoreOptions::DEFAULT_ACQUIRE_TIMEOUT;
        assert_eq!(serve(&[]).unwrap(), default);
        let half = serve(&["--db-acquire-timeout", "500ms"]).unwrap();
        assert_eq!(half, std::time::Duration::from_millis(500));
        assert_eq!(
            serve(&["--db-acquire-timeout", "3"]).unwrap(),
            std::time::Duration::from_secs(3)
        );
        for bad in ["0", "0s", "-1", "NaN"] {
            assert!(serve(&["--db-acquire-timeout", bad]).is_err(), "{bad}");
        }
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
    fn durations_take_units_or_plain_seconds() {
        let secs = |text| crate::units::duration(text).map(std::time::Duration::from);
        assert_eq!(secs("10"), Ok(std::time::Duration::from_secs(10)));
        assert_eq!(secs("2s"), Ok(std::time::Duration::from_secs(2)));
        assert_eq!(secs("500ms"), Ok(std::time::Duration::from_millis(500)));
        assert_eq!(secs("1m30s"), Ok(std::time::Duration::from_secs(90)));
        assert!(
            crate::units::duration("soon")
                .unwrap_err()
                .contains("10s, 500ms or 1m30s")
        );
        let cli = Cli::try_parse_from(["ledger", "serve", "--shutdown-grace", "2s"]).unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(*s.shutdown_grace, std::time::Duration::from_secs(2));
        assert_eq!(*s.header_timeout, ConnectionLimits::DEFAULT.header_timeout);
        assert!(Cli::try_parse_from(["ledger", "serve", "--max-connections", "0"]).is_err());
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
        assert!(!b.database.scratch && !b.database.allow_existing);
        assert!(Cli::try_parse_from(["ledger", "bench", "append", "--writers", "0"]).is_err());
        let both = ["ledger", "bench", "read", "--scratch", "--allow-existing"];
        assert!(Cli::try_parse_from(both).is_err());
    }

    #[test]
    fn group_commit_limits() {
        let group = |args: &[&str]| {
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Serve(s) => s.group.limits(),
                Command::Bench(BenchCommand::Append(b)) => b.group.limits(),
                Command::Bench(BenchCommand::Http(b)) => b.group.limits(),
                _ => panic!("no group limits"),
            })
        };
        assert_eq!(group(&["ledger", "serve"]).unwrap(), GroupLimits::default());
        let alone = group(&["ledger", "serve", "--group-max-appends", "1"]).unwrap();
        assert_eq!(
            (alone.max_appends, alone.in_flight, alone.queue),
            (1, 2, GroupLimits::default().queue)
        );
        let wide = ["ledger", "bench", "append", "--group-in-flight", "4"];
        assert_eq!(group(&wide).unwrap().in_flight, 4);
        let http = ["ledger", "bench", "http", "--group-max-appends", "64"];
        assert_eq!(group(&http).unwrap().max_appends, 64);
        for bad in [
            ["--group-max-appends", "0"],
            ["--group-max-appends", "10001"],
            ["--group-in-flight", "0"],
            ["--group-in-flight", "65"],
        ] {
            assert!(
                group(&[&["ledger", "serve"][..], &bad].concat()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serve_policy_durations() {
        let cli = Cli::try_parse_from(["ledger", "serve", "--lock-ttl", "5s"]).unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.lock_ttl, std::time::Duration::from_secs(5));
        assert_eq!(s.reveal_window, std::time::Duration::from_secs(7200));
        assert!(Cli::try_parse_from(["ledger", "serve", "--lock-ttl", "0s"]).is_err());
        assert!(Cli::try_parse_from(["ledger", "serve", "--reveal-window", "soon"]).is_err());
    }
}
