//! The `ledger` command line: `serve` (the HTTP API), `migrate`, `append`, `read`, `read-all`,
//! `bench`, `rebuild`, `project`, `token` and `audit` on a SQLite file (default
//! `sqlite://ledger.db`) or PostgreSQL (`--database-url` / `LEDGER_DATABASE_URL`). Only
//! `serve`, `migrate` and `append` create a database; `bench` runs on a throwaway one unless
//! told otherwise. `audit` reads a tenant's history as tables (or `--format json`).
//!
//! Results go to stdout as JSON; errors go to stderr as `{"error": code, "message": text}`.
//! Exit codes: 0 success, 1 database unavailable or internal failure, 2 bad input,
//! 3 append conflict. Logs go to stderr, filtered by `RUST_LOG` (default `warn`).
//!
//! This is the only crate that picks a backend or reads configuration.

mod args;
mod bench;
mod commands;
mod database;
mod output;
mod units;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::args::Cli;
use crate::output::{CliError, EXIT_BAD_INPUT, print_error, report};

/// The log filter when `RUST_LOG` is unset.
const DEFAULT_LOG: &str = "warn,sqlx::query=error";

/// Runs the `ledger` command with the process's arguments and environment and returns its
/// exit code; the `ledger` binary is just this function.
///
/// `--help` and `--version` print normally and exit 0; any other argument error prints
/// `{"error":"invalid_arguments","message":...}` on stderr and exits 2.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return argument_error(err),
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = CliError::Internal(anyhow::Error::new(e).context("starting the runtime"));
            return report(&err);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Do not wait for background tasks (pool maintenance, ...) once the command is done.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::debug!(code = err.exit_code(), "command failed");
            report(&err)
        }
    }
}

/// Handles a clap error: help and version go to stdout with exit 0, the rest is JSON.
fn argument_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            let text = err.to_string();
            let message = text.trim().trim_start_matches("error: ").trim();
            print_error(&output::ErrorBody::Plain {
                error: "invalid_arguments",
                message: message.to_string(),
            });
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings, without sqlx's slow-statement
/// notices, which a benchmark's full scans would trigger).
fn init_logging() {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LOG.to_string());
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .parse_lossy(directives);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
